"""The gateway in front of the spec-faithful fake Venice: a full tool round-trip through the generated
stubs, rate limits as RetryInfo, Venice parameters and citations end to end, and a client cancel
reaching the upstream connection. The "venice" kind is registered through `start(kinds=...)`."""

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
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.providers.venice import VeniceProvider
from tests.conftest import make_settings, status_details
from tests.providers.fakes.venice_upstream import (
    USAGE,
    VENICE_TEST_KEY,
    FakeVenice,
    chunk,
    completion,
    json_reply,
    rate_limited_reply,
    sse_reply,
    text_stream,
    tool_calls_stream,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401

MODEL = "venice/zai-org-glm-5-1"


@pytest.fixture
async def gateway(venice_fake: FakeVenice) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={"venice": {"kind": "venice", "base_url": venice_fake.base_url, "api_key": VENICE_TEST_KEY}}
    )
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "venice": VeniceProvider})
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
    gateway: chat_grpc.ChatServiceStub, venice_fake: FakeVenice
) -> None:
    venice_fake.enqueue(tool_calls_stream([("call_1", "get_weather", ['{"city":', ' "Paris"}'])]))
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]
    assert events[0].route.provider == "venice"
    assert [e.tool_call_delta.arguments_json for e in events if e.HasField("tool_call_delta")] == [
        "",
        '{"city":',
        ' "Paris"}',
    ]
    calls = [e.tool_call for e in events if e.HasField("tool_call")]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert venice_fake.last.body["tools"][0]["function"]["parameters"]["required"] == ["city"]

    venice_fake.enqueue(json_reply(completion("It is 21 °C in Paris.")))
    follow = chat_pb2.CompleteRequest(model=MODEL, messages=[_user("Weather in Paris?")])
    follow.messages.add(role=content_pb2.ROLE_ASSISTANT).parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="call_1", name="get_weather", content='{"temp_c": 21}'
        )
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.route.provider == "venice"
    messages = venice_fake.last.body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"temp_c": 21}',
        "name": "get_weather",
    }


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, venice_fake: FakeVenice
) -> None:
    venice_fake.enqueue(rate_limited_reply(reset_in=20))
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(chat_pb2.CompleteRequest(model=MODEL, messages=[_user("hi")]))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "venice"
    delay = details["RetryInfo"].retry_delay.ToTimedelta().total_seconds()
    assert 18.0 <= delay <= 20.0


async def test_venice_parameters_and_citations_end_to_end(
    gateway: chat_grpc.ChatServiceStub, venice_fake: FakeVenice
) -> None:
    citations = [{"title": "Rayleigh scattering", "url": "https://en.wikipedia.org/wiki/Rayleigh_scattering"}]
    venice_fake.enqueue(
        sse_reply(
            [
                chunk({"role": "assistant", "content": "Blue^1^."}),
                chunk({}, finish_reason="stop"),
                chunk(usage=USAGE),
                chunk(extra={"venice_parameters": {"web_search_citations": citations}}),
            ]
        )
    )
    request = chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("Why is the sky blue?")])
    request.provider_options.venice.enable_web_search = "on"
    request.provider_options.venice.include_search_results_in_stream = True
    events = [e async for e in gateway.StreamComplete(request)]
    assert [e.citation.url for e in events if e.HasField("citation")] == [citations[0]["url"]]
    assert events[-1].HasField("finish")
    assert venice_fake.last.body["venice_parameters"] == {
        "enable_web_search": "on",
        "include_search_results_in_stream": True,
    }


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, venice_fake: FakeVenice
) -> None:
    venice_fake.enqueue(text_stream([f"tok{i} " for i in range(200)], delay=0.05))
    call = gateway.StreamComplete(
        chat_pb2.StreamCompleteRequest(model=MODEL, messages=[_user("long please")])
    )
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await venice_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED
