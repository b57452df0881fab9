"""The gateway in front of the spec-faithful fake OpenAI: a full tool round-trip through the stubs,
and cancellation / deadlines reaching the upstream connection."""

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
from tests.conftest import make_settings, status_details
from tests.providers.fakes.openai_upstream import (
    FakeOpenAI,
    chat_completion,
    json_reply,
    rate_limited_reply,
    tool_calls_stream,
)


@pytest.fixture
async def gateway(openai_fake: FakeOpenAI) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={
            "openai": {
                "kind": "openai",
                "base_url": openai_fake.base_url,
                "api_key": "sk-test-0123456789abcdef",
            }
        }
    )
    gateway, built = await start(settings)
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
    gateway: chat_grpc.ChatServiceStub, openai_fake: FakeOpenAI
) -> None:
    openai_fake.enqueue(tool_calls_stream([("call_1", "get_weather", ['{"city":', ' "Paris"}'])]))
    request = chat_pb2.StreamCompleteRequest(
        model="openai/gpt-4o-mini", messages=[_user("Weather in Paris?")]
    )
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    sent = openai_fake.last.body
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]

    openai_fake.enqueue(json_reply(chat_completion("It is 21 °C in Paris.")))
    follow = chat_pb2.CompleteRequest(model="openai/gpt-4o-mini")
    follow.messages.extend([_user("Weather in Paris?")])
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    assistant.parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="call_1", name="get_weather", content='{"temp_c": 21}'
        )
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    messages = openai_fake.last.body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, openai_fake: FakeOpenAI
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="openai/fake-slow", messages=[_user("long answer please")])
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await openai_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, openai_fake: FakeOpenAI
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="openai/fake-slow", messages=[_user("long answer please")])
    started = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request, timeout=0.5):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    disconnect = await openai_fake.wait_for_disconnect(within=1.5)
    assert disconnect.time - (started + 0.5) < 1.0


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, openai_fake: FakeOpenAI
) -> None:
    openai_fake.enqueue(rate_limited_reply())
    request = chat_pb2.CompleteRequest(model="openai/gpt-4o-mini", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() > 0


async def test_count_tokens_asks_the_provider(
    gateway: chat_grpc.ChatServiceStub, openai_fake: FakeOpenAI
) -> None:
    request = chat_pb2.CountTokensRequest(model="openai/gpt-4o-mini", messages=[_user("hello world")])
    response = await gateway.CountTokens(request)
    assert response.exact
    assert response.method == "provider"
    assert openai_fake.last.path.endswith("/responses/input_tokens")
