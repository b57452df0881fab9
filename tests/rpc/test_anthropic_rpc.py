"""The gateway in front of the spec-faithful fake Anthropic, through the generated stubs: a full tool
round-trip with a thinking signature, rate limits as RetryInfo, cancellation and deadlines reaching
the upstream connection, token counting and model listing."""

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
from homa_server.providers.anthropic import AnthropicProvider
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import (
    ANTHROPIC_TEST_KEY,
    FakeAnthropic,
    json_reply,
    message,
    rate_limited_reply,
    sse_reply,
    stream_events,
    text_block_stream,
    tool_use_block_stream,
)

anthropic_upstream, anthropic_fake = fx.anthropic_upstream, fx.anthropic_fake

SIGNATURE = "EqQBCkYIBxgCKkBkNjE2ZDk1YzQ3NjY0YjY1OTY1ZTQ2ZjA3NTY1NmFhNQ=="


@pytest.fixture
async def gateway(anthropic_fake: FakeAnthropic) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={
            "anthropic": {
                "kind": "anthropic",
                "base_url": anthropic_fake.base_url,
                "api_key": ANTHROPIC_TEST_KEY,
                "options": {"default_max_tokens": 1024},
            }
        }
    )
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "anthropic": AnthropicProvider})
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield chat_grpc.ChatServiceStub(channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _user(text: str) -> content_pb2.Message:
    message_ = content_pb2.Message(role=content_pb2.ROLE_USER)
    message_.parts.add(text=text)
    return message_


async def test_tool_round_trip_with_thinking_through_the_gateway(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    thinking = [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "thinking_delta", "thinking": "Need the weather tool."},
        {"type": "signature_delta", "signature": SIGNATURE},
    ]
    anthropic_fake.enqueue(
        sse_reply(
            stream_events(
                [thinking, tool_use_block_stream("toolu_01", "get_weather", ['{"city":', ' "Paris"}'])],
                stop_reason="tool_use",
            )
        )
    )
    request = chat_pb2.StreamCompleteRequest(
        model="anthropic/claude-sonnet-4-5",
        messages=[_user("Weather in Paris?")],
        reasoning=chat_pb2.ReasoningOptions(budget_tokens=2048),
    )
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]
    assert events[0].WhichOneof("event") == "route"
    assert events[0].route.provider == "anthropic"
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("toolu_01", "get_weather", {"city": "Paris"})
    ]
    assert [
        e.tool_call_delta.arguments_json for e in events if e.WhichOneof("event") == "tool_call_delta"
    ] == [
        "",
        '{"city":',
        ' "Paris"}',
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    reasoning = "".join(e.delta.reasoning for e in events if e.WhichOneof("event") == "delta")
    signature = next(e.delta.reasoning_signature for e in events if e.delta.reasoning_signature)
    sent = anthropic_fake.last.body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 1024 + 2048
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]

    anthropic_fake.enqueue(json_reply(message("It is 21 °C in Paris.")))
    follow = chat_pb2.CompleteRequest(model="anthropic/claude-sonnet-4-5", reasoning=request.reasoning)
    follow.messages.append(_user("Weather in Paris?"))
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    assistant.parts.add(reasoning=content_pb2.Reasoning(text=reasoning, signature=signature))
    assistant.parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="toolu_01", name="get_weather", content='{"temp_c": 21}'
        )
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.finish_reason == usage_pb2.FINISH_REASON_STOP
    messages = anthropic_fake.last.body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the weather tool.", "signature": SIGNATURE},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"temp_c": 21}'}],
    }


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.enqueue(rate_limited_reply())
    request = chat_pb2.CompleteRequest(model="anthropic/claude-sonnet-4-5", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "anthropic"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 7.0


async def test_streamed_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.enqueue(rate_limited_reply())
    request = chat_pb2.StreamCompleteRequest(model="anthropic/claude-sonnet-4-5", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request):
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_details(info.value)["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 7.0


async def test_error_mid_stream_ends_the_rpc_non_ok(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="anthropic/fake-midstream-error", messages=[_user("hi")])
    received = []
    with pytest.raises(aio.AioRpcError) as info:
        async for item in gateway.StreamComplete(request):
            received.append(item)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"
    assert "finish" not in [e.WhichOneof("event") for e in received]


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    request = chat_pb2.StreamCompleteRequest(
        model="anthropic/fake-slow", messages=[_user("long answer please")]
    )
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await anthropic_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    request = chat_pb2.StreamCompleteRequest(
        model="anthropic/fake-slow", messages=[_user("long answer please")]
    )
    started = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request, timeout=0.5):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    disconnect = await anthropic_fake.wait_for_disconnect(within=1.5)
    assert disconnect.time - (started + 0.5) < 1.0


async def test_invalid_input_never_reaches_the_upstream(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    request = chat_pb2.CompleteRequest(model="anthropic/claude-sonnet-4-5", messages=[_user("hi")], seed=7)
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["BadRequest"].field_violations[0].field == "seed"
    assert anthropic_fake.requests == []


async def test_count_tokens_asks_the_provider(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    request = chat_pb2.CountTokensRequest(
        model="anthropic/claude-sonnet-4-5", messages=[_user("hello world")]
    )
    response = await gateway.CountTokens(request)
    assert response.exact
    assert response.method == "provider"
    assert anthropic_fake.last.path == "/v1/messages/count_tokens"


async def test_streamed_text_ends_with_one_finish(
    gateway: chat_grpc.ChatServiceStub, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.enqueue(sse_reply(stream_events([text_block_stream(["Bonjour", " !"])])))
    request = chat_pb2.StreamCompleteRequest(model="anthropic/claude-sonnet-4-5", messages=[_user("hi")])
    events = [e async for e in gateway.StreamComplete(request)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["route", "usage", "delta", "delta", "usage", "finish"]
    assert "".join(e.delta.text for e in events) == "Bonjour !"
