"""The gateway in front of the spec-faithful fake Ollama, through the generated stubs: a full tool
round-trip, a 429 with RetryInfo, a mid-stream error, and cancel / deadline reaching the upstream."""

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
from homa_server.providers.ollama import OllamaProvider
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    FakeOllama,
    chat_response,
    json_reply,
    ollama_fake_fixture,
    ollama_upstream_fixture,
    rate_limited_reply,
    tool_call_stream,
)


@pytest.fixture
async def gateway(ollama_fake: FakeOllama) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(providers={"ollama": {"kind": "ollama", "base_url": ollama_fake.base_url}})
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "ollama": OllamaProvider})
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
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    ollama_fake.enqueue(tool_call_stream([("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]))
    request = chat_pb2.StreamCompleteRequest(
        model="ollama/llama3.2", messages=[_user("Weather and time in Paris?")]
    )
    for name, prop in (("get_weather", "city"), ("get_time", "tz")):
        tool = request.tools.add(name=name, description=f"Look up {prop}")
        tool.parameters.update(
            {"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}
        )
    events = [e async for e in gateway.StreamComplete(request)]
    assert events[0].route == usage_pb2.Route(provider="ollama", model="llama3.2", attempt=1)
    deltas = [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("call_0", "get_weather", {"city": "Paris"}),
        ("call_1", "get_time", {"tz": "CET"}),
    ]
    assert [d.arguments_json for d in deltas] == [c.arguments_json for c in calls]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert ollama_fake.last.body["tools"][0]["function"]["parameters"]["required"] == ["city"]

    ollama_fake.enqueue(json_reply(chat_response("It is 21 °C and 14:05 in Paris.")))
    follow = chat_pb2.CompleteRequest(model="ollama/llama3.2", messages=[_user("Weather and time in Paris?")])
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    for call in calls:
        assistant.parts.add(tool_call=call)
    results = follow.messages.add(role=content_pb2.ROLE_TOOL)
    results.parts.add(tool_result=content_pb2.ToolResult(tool_call_id="call_0", content='{"temp_c": 21}'))
    results.parts.add(
        tool_result=content_pb2.ToolResult(tool_call_id="call_1", name="get_time", content="14:05")
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C and 14:05 in Paris."
    assert answer.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert answer.usage.total_tokens == 44
    sent = ollama_fake.last.body
    assert sent["stream"] is False
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"tz": "CET"}}},
            ],
        },
        {"role": "tool", "content": '{"temp_c": 21}', "tool_name": "get_weather"},
        {"role": "tool", "content": "14:05", "tool_name": "get_time"},
    ]


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    ollama_fake.enqueue(rate_limited_reply())
    request = chat_pb2.CompleteRequest(model="ollama/llama3.2", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "ollama"
    assert details["ErrorInfo"].metadata["upstream_status"] == "429"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 1.0


async def test_forced_tool_choice_is_invalid_argument(
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    request = chat_pb2.CompleteRequest(
        model="ollama/llama3.2",
        messages=[_user("hi")],
        tools=[content_pb2.Tool(name="ping")],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
    )
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == ["tool_choice"]
    assert ollama_fake.requests == []


async def test_midstream_error_ends_the_rpc_non_ok(
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="ollama/fake-midstream-error", messages=[_user("hi")])
    received = []
    with pytest.raises(aio.AioRpcError) as info:
        async for event in gateway.StreamComplete(request):
            received.append(event.WhichOneof("event"))
    assert received == ["route", "delta", "delta"]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="ollama/fake-slow", messages=[_user("long answer please")])
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await ollama_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, ollama_fake: FakeOllama
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="ollama/fake-slow", messages=[_user("long answer please")])
    started = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request, timeout=0.5):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    disconnect = await ollama_fake.wait_for_disconnect(within=1.5)
    assert disconnect.time - (started + 0.5) < 1.0
