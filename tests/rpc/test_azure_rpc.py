"""The gateway in front of the spec-faithful fake Azure OpenAI resource, through the generated stubs:
a full tool round-trip, errors with their google.rpc details, cancellation and deadlines reaching
the upstream connection, and token counting falling back to the local estimate."""

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
from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.registry import BUILTIN_KINDS
from tests.conftest import make_settings, status_details
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import (
    AZURE_KEY,
    FakeAzure,
    chat_completion,
    content_filter_reply,
    json_reply,
    rate_limited_reply,
    tool_calls_stream,
)

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake

KINDS = {**BUILTIN_KINDS, "azure_openai": AzureOpenAIProvider}


@pytest.fixture
async def gateway(azure_fake: FakeAzure) -> AsyncIterator[chat_grpc.ChatServiceStub]:
    settings = make_settings(
        providers={
            "azure": {
                "kind": "azure_openai",
                "base_url": azure_fake.base_url,
                "api_key": AZURE_KEY,
                "models": ["gpt-4o"],
                "options": {"api_version": "2024-10-21", "deployments": {"gpt-4o": "prod-gpt4o"}},
            }
        }
    )
    gateway, built = await start(settings, kinds=KINDS)
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
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    azure_fake.enqueue(tool_calls_stream([("call_1", "get_weather", ['{"city":', ' "Paris"}'])]))
    request = chat_pb2.StreamCompleteRequest(model="azure/gpt-4o", messages=[_user("Weather in Paris?")])
    tool = request.tools.add(name="get_weather", description="Current weather")
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    events = [e async for e in gateway.StreamComplete(request)]
    assert events[0].route.provider == "azure"
    deltas = [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    assert "".join(d.arguments_json for d in deltas) == '{"city": "Paris"}'
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    first = azure_fake.last
    assert first.deployment == "prod-gpt4o"
    assert first.query == {"api-version": "2024-10-21"}
    assert first.body["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert "model" not in first.body

    azure_fake.enqueue(json_reply(chat_completion("It is 21 °C in Paris.")))
    follow = chat_pb2.CompleteRequest(model="gpt-4o")  # bare name: listed in the provider's models
    follow.messages.extend([_user("Weather in Paris?")])
    follow.messages.add(role=content_pb2.ROLE_ASSISTANT).parts.add(tool_call=calls[0])
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(
            tool_call_id="call_1", name="get_weather", content='{"temp_c": 21}'
        )
    )
    follow.tools.extend(request.tools)
    answer = await gateway.Complete(follow)
    assert answer.message.parts[0].text == "It is 21 °C in Paris."
    assert answer.route.provider == "azure"
    messages = azure_fake.last.body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}


async def test_upstream_429_becomes_retry_info(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    azure_fake.enqueue(rate_limited_reply(seconds=7, headers={"apim-request-id": "apim-0001"}))
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(chat_pb2.CompleteRequest(model="azure/gpt-4o", messages=[_user("hi")]))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["upstream_request_id"] == "apim-0001"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 7.0


async def test_filtered_prompt_is_invalid_argument(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    azure_fake.enqueue(content_filter_reply(observed=True))
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(
            chat_pb2.StreamCompleteRequest(model="azure/gpt-4o", messages=[_user("something nasty")])
        ):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["ErrorInfo"].reason == "CONTENT_FILTERED"


async def test_unsupported_input_is_rejected_before_the_upstream(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await gateway.Complete(
            chat_pb2.CompleteRequest(model="azure/gpt-4o", messages=[_user("hi")], top_k=3)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["BadRequest"].field_violations[0].field == "top_k"
    assert azure_fake.requests == []


async def test_client_cancel_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    call = gateway.StreamComplete(
        chat_pb2.StreamCompleteRequest(model="azure/fake-slow", messages=[_user("long")])
    )
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    cancelled_at = time.monotonic()
    call.cancel()
    disconnect = await azure_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_closes_the_upstream_within_one_second(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    request = chat_pb2.StreamCompleteRequest(model="azure/fake-slow", messages=[_user("long")])
    started = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in gateway.StreamComplete(request, timeout=0.5):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    disconnect = await azure_fake.wait_for_disconnect(within=1.5)
    assert disconnect.time - (started + 0.5) < 1.0


async def test_count_tokens_is_estimated_locally(
    gateway: chat_grpc.ChatServiceStub, azure_fake: FakeAzure
) -> None:
    response = await gateway.CountTokens(
        chat_pb2.CountTokensRequest(model="azure/gpt-4o", messages=[_user("hello world")])
    )
    assert response.input_tokens > 0
    assert response.method != "provider"
    assert azure_fake.requests == []
