"""The gateway in front of the spec-faithful fake Gemini, through the generated stubs: a full tool
round trip (streamed call with its thought signature, then the tool result), errors with their
google.rpc details, cancellation reaching the upstream connection, and token counting."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.app import start, stop
from homa_server.providers.gemini import GeminiProvider
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    MODEL_BEHAVIOURS,
    TEST_KEY,
    FakeGemini,
    example_stream,
    gemini_fake_fixture,
    gemini_upstream_fixture,
    json_reply,
    rate_limited_reply,
    response_json,
)

MODEL = "gemini/gemini-2.5-flash"


@pytest.fixture
async def gateway(gemini_fake: FakeGemini) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={"gemini": {"kind": "gemini", "base_url": gemini_fake.base_url, "api_key": TEST_KEY}}
    )
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "gemini": GeminiProvider})
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield chat_grpc.ChatServiceStub(channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _user(text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=content_pb2.ROLE_USER)
    message.parts.add(text=text)
    return message


async def test_tool_round_trip_through_the_gateway(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(example_stream())  # "Let me check", then get_weather(city=Paris) signed "Cj0="
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]
    assert events[0].WhichOneof("event") == "route"
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    deltas = [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert text == "Let me check"
    assert [(d.index, d.id, d.name, d.arguments_json) for d in deltas] == [
        (0, "call_0", "get_weather", '{"city":"Paris"}')
    ]
    assert [(c.id, c.name, orjson.loads(c.arguments_json), c.signature) for c in calls] == [
        ("call_0", "get_weather", {"city": "Paris"}, base64.b64decode("Cj0="))
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert events[-1].finish.raw_reason == "STOP"
    sent = gemini_fake.last.body
    assert sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["required"] == ["city"]

    gemini_fake.enqueue(json_reply(response_json([{"text": "It is 21 °C in Paris."}])))
    follow = chat_pb2.CompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    assistant.parts.add(text=text)
    assistant.parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="call_0", content='{"temp_c": 21}'
        )  # no name: looked up
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.route.provider == "gemini"
    contents = gemini_fake.last.body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"text": "Let me check"},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0"},
                "thoughtSignature": "Cj0=",
            },
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"id": "call_0", "name": "get_weather", "response": {"temp_c": 21}}}],
    }


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(rate_limited_reply())
    request = chat_pb2.CompleteRequest(model=MODEL, messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "gemini"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 27.0
    assert "QuotaFailure" in details


async def test_streamed_429_before_the_first_event(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(rate_limited_reply())
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request):
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_details(info.value)["RetryInfo"].retry_delay.seconds == 27


async def test_mid_stream_error_ends_the_rpc_non_ok(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="gemini/fake-midstream-error", messages=[_user("hi")])
    received = []
    with pytest.raises(aio.AioRpcError) as info:
        async for event in gateway.StreamComplete(request):
            received.append(event.WhichOneof("event"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"
    assert "delta" in received
    assert "finish" not in received


async def test_blocked_prompt_is_content_filtered(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    request = chat_pb2.CompleteRequest(model="gemini/fake-blocked", messages=[_user("something bad")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["ErrorInfo"].reason == "CONTENT_FILTERED"


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="gemini/fake-slow", messages=[_user("long answer please")])
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await gemini_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_count_tokens_asks_the_provider(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(json_reply({"totalTokens": 5}))
    request = chat_pb2.CountTokensRequest(model=MODEL, messages=[_user("hello world")])
    response = await gateway.CountTokens(request)
    assert (response.input_tokens, response.exact, response.method) == (5, True, "provider")
    assert gemini_fake.last.path == "/v1beta/models/gemini-2.5-flash:countTokens"


async def test_thinking_stream_through_the_gateway(
    gateway: chat_grpc.ChatServiceStub, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-thinking"](None))
    request = chat_pb2.StreamCompleteRequest(
        model=MODEL,
        messages=[_user("6 x 7?")],
        reasoning=chat_pb2.ReasoningOptions(include=True, budget_tokens=1024),
    )
    events = [e async for e in gateway.StreamComplete(request)]
    deltas = [e.delta for e in events if e.WhichOneof("event") == "delta"]
    assert "".join(d.reasoning for d in deltas) == "Let me think about it."
    assert [d.reasoning_signature for d in deltas if d.reasoning_signature] == [b"sig-text"]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_STOP
    assert gemini_fake.last.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }
