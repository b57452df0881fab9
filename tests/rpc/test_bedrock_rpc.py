"""The gateway in front of the spec-faithful fake Bedrock, through the generated stubs: a full tool
round-trip, throttling as RESOURCE_EXHAUSTED with RetryInfo, an exception inside a 200 stream,
cancellation reaching the upstream, and token counting."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import grpc
import orjson
import pytest
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.app import start, stop
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes.bedrock_upstream import (
    ACCESS_KEY,
    MODEL,
    REGION,
    SECRET_KEY,
    FakeBedrock,
    checked_fake,
    converse_response,
    example_stream,
    json_reply,
    running_fake,
    throttling_reply,
    tool_stream,
)


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def gateway(fake: FakeBedrock) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={
            "bedrock": {
                "kind": "bedrock",
                "base_url": fake.base_url,
                "options": {
                    "region": REGION,
                    "access_key_id": ACCESS_KEY,
                    "secret_access_key": SECRET_KEY,
                    "control_base_url": fake.base_url,
                },
            }
        }
    )
    gateway, built = await start(settings, kinds={**BUILTIN_KINDS, "bedrock": BedrockProvider})
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


def _weather_tool() -> content_pb2.Tool:
    tool = content_pb2.Tool(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return tool


async def test_tool_round_trip_through_the_gateway(
    gateway: chat_grpc.ChatServiceStub, fake: FakeBedrock
) -> None:
    fake.enqueue(tool_stream([("tooluse_1", "get_weather", ['{"city":', ' "Paris"}'])], text="Let me check."))
    request = chat_pb2.StreamCompleteRequest(
        model=f"bedrock/{MODEL}", messages=[_user("Weather in Paris?")], tools=[_weather_tool()]
    )
    events = [e async for e in gateway.StreamComplete(request)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "route"
    assert kinds[-1] == "finish"
    assert kinds.count("tool_call_delta") == 3
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("tooluse_1", "get_weather", {"city": "Paris"})
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert fake.last.action == "converse-stream"
    assert fake.last.body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["city"]

    fake.enqueue(json_reply(converse_response([{"text": "It is 21 °C in Paris."}])))
    follow = chat_pb2.CompleteRequest(model=f"bedrock/{MODEL}", tools=[_weather_tool()])
    follow.messages.append(_user("Weather in Paris?"))
    assistant = follow.messages.add(role=content_pb2.ROLE_ASSISTANT)
    assistant.parts.add(text="Let me check.")
    assistant.parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="tooluse_1", name="get_weather", content='{"temp_c": 21}'
        )
    )
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.route.provider == "bedrock"
    messages = fake.last.body["messages"]
    assert messages[1]["content"][1] == {
        "toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp_c": 21}}]}}],
    }


async def test_throttling_becomes_resource_exhausted_with_retry_info(
    gateway: chat_grpc.ChatServiceStub, fake: FakeBedrock
) -> None:
    fake.enqueue(throttling_reply())
    request = chat_pb2.CompleteRequest(model=f"bedrock/{MODEL}", messages=[_user("hi")])
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["upstream_type"] == "ThrottlingException"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 1.0


async def test_exception_inside_a_200_stream_ends_the_rpc_non_ok(
    gateway: chat_grpc.ChatServiceStub, fake: FakeBedrock
) -> None:
    fake.enqueue(example_stream("converse-stream-throttling.eventstream"))
    request = chat_pb2.StreamCompleteRequest(model=f"bedrock/{MODEL}", messages=[_user("hi")])
    received = []
    with pytest.raises(aio.AioRpcError) as info:
        async for event in gateway.StreamComplete(request):
            received.append(event.WhichOneof("event"))
    assert "finish" not in received
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_details(info.value)["ErrorInfo"].metadata["upstream_type"] == "throttlingException"


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, fake: FakeBedrock
) -> None:
    request = chat_pb2.StreamCompleteRequest(
        model="bedrock/fake-slow", messages=[_user("long answer please")]
    )
    call = gateway.StreamComplete(request)
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_count_tokens_asks_bedrock(gateway: chat_grpc.ChatServiceStub, fake: FakeBedrock) -> None:
    fake.enqueue(json_reply({"inputTokens": 9}))
    response = await gateway.CountTokens(
        chat_pb2.CountTokensRequest(model=f"bedrock/{MODEL}", messages=[_user("hello world")])
    )
    assert (response.input_tokens, response.exact, response.method) == (9, True, "provider")
    assert fake.last.action == "count-tokens"
