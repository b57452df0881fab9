"""AsyncHomaClient against the in-process gateway (mock provider) on the test's event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from homa.type.v1 import usage_pb2
from homa_client import (
    AsyncHomaClient,
    ChatRequestBuilder,
    DeadlineExceededError,
    HomaError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    UnavailableError,
    text_of,
    tool_calls_of,
)
from homa_server.app import start, stop
from tests.rpc.test_client_support import closed_port_target, gateway_settings


@pytest.fixture
async def gateway_target() -> AsyncIterator[str]:
    gateway, built = await start(gateway_settings())
    try:
        yield f"127.0.0.1:{built.port}"
    finally:
        await stop(gateway, built, grace=0)


@pytest.fixture
async def client(gateway_target: str) -> AsyncIterator[AsyncHomaClient]:
    async with AsyncHomaClient(gateway_target, timeout=10) as homa:
        yield homa


def echo(text: str = "hello") -> ChatRequestBuilder:
    return ChatRequestBuilder("mock/echo").user(text)


async def test_complete_returns_the_answer_and_records_the_call(client: AsyncHomaClient) -> None:
    response = await client.chat.complete(echo("hello gateway"))

    assert text_of(response.message) == "echo: hello gateway"
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.route.provider == "mock"
    call = client.last_call
    assert call is not None
    assert call.code is grpc.StatusCode.OK
    assert len(call.request_id) == 32
    assert (call.provider, call.model, call.attempts) == ("mock", "echo", 1)
    assert call.overhead_ms is not None


async def test_complete_accepts_a_built_request_and_sends_the_request_id(client: AsyncHomaClient) -> None:
    await client.chat.complete(echo().build(), request_id="client-chosen-id.1")

    assert client.last_call is not None
    assert client.last_call.request_id == "client-chosen-id.1"


async def test_last_call_is_per_task(client: AsyncHomaClient) -> None:
    async def call(request_id: str) -> str:
        await client.chat.complete(echo(), request_id=request_id)
        await asyncio.sleep(0)
        assert client.last_call is not None
        return client.last_call.request_id

    assert list(await asyncio.gather(call("task-a"), call("task-b"))) == ["task-a", "task-b"]


async def test_stream_yields_route_first_and_finish_last(client: AsyncHomaClient) -> None:
    stream = client.chat.stream(echo("a streamed answer please"))
    events = [event async for event in stream]

    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "route"
    assert kinds[-1] == "finish"
    assert kinds.count("finish") == 1
    assert "".join(e.delta.text for e in events if e.HasField("delta")) == "echo: a streamed answer please"
    assert stream.call_info is not None
    assert stream.call_info.code is grpc.StatusCode.OK
    assert stream.request_id == stream.call_info.request_id


async def test_collect_assembles_text_usage_and_finish(client: AsyncHomaClient) -> None:
    result = await client.chat.collect(echo("collect me"), request_id="collect-1")

    assert result.text == "echo: collect me"
    assert result.finish_reason_name == "STOP"
    assert result.usage.total_tokens > 0
    assert result.route.provider == "mock"
    assert result.request_id == "collect-1"
    assert text_of(result.to_complete_response().message) == "echo: collect me"


async def test_tool_call_from_mock_tool(client: AsyncHomaClient) -> None:
    request = (
        ChatRequestBuilder("mock/tool")
        .user("Weather in Paris?")
        .tool(
            "get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}}
        )
    )

    response = await client.chat.complete(request)
    streamed = await client.chat.collect(request)

    [call] = tool_calls_of(response.message)
    assert call.name == "get_weather"
    assert json.loads(call.arguments_json) == {"city": "Paris"}
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in streamed.tool_calls] == [
        (call.id, call.name, call.arguments_json)
    ]
    assert streamed.finish_reason_name == "TOOL_CALLS"


async def test_tool_results_round_trip(client: AsyncHomaClient) -> None:
    first = await client.chat.complete(ChatRequestBuilder("mock/tool").user("Weather?"))
    [call] = tool_calls_of(first.message)
    follow_up = (
        ChatRequestBuilder("mock/tool")
        .user("Weather?")
        .message(first.message)
        .tool_result(call.id, {"temp_c": 21}, name=call.name)
    )

    second = await client.chat.complete(follow_up)

    assert text_of(second.message) == 'tool results: {"temp_c": 21}'


async def test_rate_limited_raises_rate_limit_error_with_retry_after(client: AsyncHomaClient) -> None:
    with pytest.raises(RateLimitError) as caught:
        await client.chat.complete(ChatRequestBuilder("mock/rate-limited").user("hi"))

    error = caught.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "UPSTREAM_RATE_LIMITED"
    assert error.retry_after == 2.0
    assert error.retryable
    assert error.from_gateway
    assert error.metadata["provider"] == "mock"
    assert client.last_call is not None
    assert error.request_id == client.last_call.request_id
    assert client.last_call.code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_die_midway_stream_raises_unavailable_after_some_deltas(client: AsyncHomaClient) -> None:
    deltas = []
    stream = client.chat.stream(ChatRequestBuilder("mock/die-midway").user("go"))
    with pytest.raises(UnavailableError) as caught:
        async for event in stream:
            if event.HasField("delta"):
                deltas.append(event.delta.text)

    assert len(deltas) == 2
    assert caught.value.reason == "UPSTREAM_STREAM_INTERRUPTED"
    assert caught.value.retryable
    assert stream.call_info is not None
    assert stream.call_info.code is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(UnavailableError):
        await client.chat.collect(ChatRequestBuilder("mock/die-midway").user("go"))


async def test_invalid_request_raises_with_field_violations(client: AsyncHomaClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.chat.complete(ChatRequestBuilder("mock/echo").temperature(5))

    error = caught.value
    assert error.reason == "INVALID_REQUEST"
    fields = {violation.field for violation in error.field_violations}
    assert fields == {"messages", "temperature"}
    assert not error.retryable


async def test_unknown_model_raises_not_found(client: AsyncHomaClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.chat.complete(ChatRequestBuilder("nowhere/model").user("hi"))

    assert caught.value.reason == "MODEL_NOT_FOUND"


async def test_scripted_mock_through_extra_body(client: AsyncHomaClient) -> None:
    request = echo().extra_body({"mock": {"text": "scripted answer", "finish_reason": "LENGTH"}})

    result = await client.chat.collect(request)

    assert result.text == "scripted answer"
    assert result.finish_reason == usage_pb2.FINISH_REASON_LENGTH


async def test_closing_a_stream_cancels_it(client: AsyncHomaClient) -> None:
    request = ChatRequestBuilder("mock/slow").user("a long enough prompt to make many chunks")
    started = time.monotonic()
    async with client.chat.stream(request) as stream:
        first = await anext(stream)
        assert first.HasField("route")
    assert [event async for event in stream] == []
    assert time.monotonic() - started < 1.0
    # The channel is still usable after a cancelled stream.
    assert text_of((await client.chat.complete(echo())).message) == "echo: hello"


async def test_deadline_raises_deadline_exceeded(client: AsyncHomaClient) -> None:
    request = ChatRequestBuilder("mock/slow").user("a long enough prompt to make many chunks")

    with pytest.raises(DeadlineExceededError) as caught:
        await client.chat.collect(request, timeout=0.3)

    assert caught.value.retryable


async def test_count_tokens_from_a_builder(client: AsyncHomaClient) -> None:
    counted = await client.chat.count_tokens(echo("count these tokens please"))

    assert counted.input_tokens > 0
    assert counted.method


async def test_converse_runs_turns_and_tool_results(client: AsyncHomaClient) -> None:
    seen: list[str | None] = []
    async with client.chat.converse(ChatRequestBuilder("mock/tool").system("Be brief.")) as conversation:
        turn = await conversation.send(
            "Weather in Paris?", on_event=lambda e: seen.append(e.WhichOneof("event"))
        )
        assert turn.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
        [call] = turn.tool_calls
        turn = await conversation.send_tool_results({call.id: {"temp_c": 21}})
        assert turn.text == 'tool results: {"temp_c": 21}'
    assert seen[0] == "route"
    assert seen[-1] == "turn_complete"
    assert len(conversation.turns) == 2
    assert conversation.call_info is not None
    assert conversation.call_info.code is grpc.StatusCode.OK


async def test_converse_protocol_error_raises(client: AsyncHomaClient) -> None:
    conversation = client.chat.converse("mock/echo")
    with pytest.raises(InvalidArgumentError):
        await conversation.send_tool_results({"call_x": "nothing was asked"})
    assert conversation.call_info is not None


async def test_list_models_follows_pages(client: AsyncHomaClient) -> None:
    everything = await client.admin.list_models()
    paged = await client.admin.list_models(page_size=2)
    mock_only = await client.admin.list_models("mock")

    ids = [model.id for model in everything]
    assert {"mock/echo", "mock/tool", "mock/rate-limited", "mock/die-midway"} <= set(ids)
    assert [model.id for model in paged] == ids
    assert [model.id for model in mock_only] == [i for i in ids if i.startswith("mock/")]


async def test_list_models_of_unknown_provider_raises_not_found(client: AsyncHomaClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.admin.list_models("nope")

    assert caught.value.reason == "PROVIDER_NOT_FOUND"


async def test_get_model_list_providers_and_server_info(client: AsyncHomaClient) -> None:
    model = await client.admin.get_model("mock/echo")
    providers = await client.admin.list_providers(probe=True)
    info = await client.admin.server_info()

    assert model.id == "mock/echo"
    assert [p.name for p in providers] == ["local", "mock"]
    assert providers[0].model_count > 0
    assert info.service_name == "homa"
    assert "homa.chat.v1" in info.api_versions
    with pytest.raises(NotFoundError):
        await client.admin.get_model("mock/missing")


async def test_connection_refused_is_unavailable_not_from_gateway() -> None:
    async with AsyncHomaClient(closed_port_target(), timeout=5) as homa:
        with pytest.raises(UnavailableError) as caught:
            await homa.chat.complete(echo(), request_id="refused-1")

    error = caught.value
    assert isinstance(error, HomaError)
    assert error.reason == "UNAVAILABLE"
    assert not error.from_gateway
    assert error.request_id == "refused-1"
