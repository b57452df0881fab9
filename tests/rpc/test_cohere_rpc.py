"""The gateway in front of the spec-faithful fake Cohere, through the generated stubs: a full tool
round-trip (streamed tool call with its plan, then the tool result), rate limits as RetryInfo,
failures inside a 200 stream, cancellation reaching the upstream, and local token counting."""

from __future__ import annotations

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
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.cohere.result_mapping import TOOL_PLAN_SIGNATURE
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes.cohere_upstream import (
    COHERE_TEST_KEY,
    FakeCohere,
    chat_response,
    json_reply,
    rate_limited_reply,
    tool_calls_stream,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

MODEL = "cohere/command-a-03-2025"


@pytest.fixture
async def gateway(cohere_fake: FakeCohere) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={"cohere": {"kind": "cohere", "base_url": cohere_fake.base_url, "api_key": COHERE_TEST_KEY}}
    )
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "cohere": CohereProvider})
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
    gateway: chat_grpc.ChatServiceStub, cohere_fake: FakeCohere
) -> None:
    cohere_fake.enqueue(
        tool_calls_stream(
            [("get_weather_1", "get_weather", ['{"city":', ' "Paris"}'])],
            plan=["I will check", " the weather."],
        )
    )
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]

    assert events[0].WhichOneof("event") == "route"
    assert events[0].route.provider == "cohere"
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("get_weather_1", "get_weather", {"city": "Paris"})
    ]
    fragments = [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    assert "".join(f.arguments_json for f in fragments) == calls[0].arguments_json
    plan = "".join(e.delta.reasoning for e in events if e.WhichOneof("event") == "delta")
    signature = next(e.delta.reasoning_signature for e in events if e.delta.reasoning_signature)
    assert (plan, signature) == ("I will check the weather.", TOOL_PLAN_SIGNATURE)
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert cohere_fake.last.body["tools"][0]["function"]["parameters"]["required"] == ["city"]

    cohere_fake.enqueue(json_reply(chat_response("It is 21 °C in Paris.")))
    follow = chat_pb2.CompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    assistant.parts.add(reasoning=content_pb2.Reasoning(text=plan, signature=signature))
    assistant.parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="get_weather_1", name="get_weather", content='{"temp_c": 21}'
        )
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)

    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert answer.route.provider == "cohere"
    assert cohere_fake.last.body["messages"][1:] == [
        {
            "role": "assistant",
            "tool_plan": "I will check the weather.",
            "tool_calls": [
                {
                    "id": "get_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "get_weather_1", "content": '{"temp_c": 21}'},
    ]


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, cohere_fake: FakeCohere
) -> None:
    cohere_fake.enqueue(rate_limited_reply())
    request = chat_pb2.CompleteRequest(model=MODEL, messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "cohere"
    assert details["ErrorInfo"].metadata["upstream_status"] == "429"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 60.0
    assert COHERE_TEST_KEY not in info.value.details()


async def test_streamed_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, cohere_fake: FakeCohere
) -> None:
    cohere_fake.enqueue(rate_limited_reply())
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request):
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_details(info.value)["RetryInfo"].retry_delay.ToTimedelta().total_seconds() > 0


async def test_error_inside_a_200_stream_ends_non_ok(gateway: chat_grpc.ChatServiceStub) -> None:
    request = chat_pb2.StreamCompleteRequest(model="cohere/fake-midstream-error", messages=[_user("hi")])
    received = []
    with pytest.raises(aio.AioRpcError) as info:
        async for event in gateway.StreamComplete(request):
            received.append(event.WhichOneof("event"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_ERROR"
    assert received == ["route", "delta", "usage"]


async def test_stream_cut_before_message_end_ends_non_ok(gateway: chat_grpc.ChatServiceStub) -> None:
    request = chat_pb2.StreamCompleteRequest(model="cohere/fake-drop", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request):
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_STREAM_INTERRUPTED"


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, cohere_fake: FakeCohere
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="cohere/fake-slow", messages=[_user("long answer please")])
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await cohere_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_count_tokens_is_estimated_locally(
    gateway: chat_grpc.ChatServiceStub, cohere_fake: FakeCohere
) -> None:
    request = chat_pb2.CountTokensRequest(model=MODEL, messages=[_user("hello world")])
    response = await gateway.CountTokens(request)
    assert not response.exact
    assert response.input_tokens > 0
    assert cohere_fake.requests == []
