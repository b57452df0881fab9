"""ChatService through the generated stubs against an in-process server (mock provider)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2, usage_pb2
from tests.conftest import RunningServer, status_details


def _request(
    model: str = "mock/echo", text: str = "hello there", cls: type = chat_pb2.CompleteRequest
) -> object:
    request = cls(model=model)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text=text)
    return request


async def test_complete_returns_answer_route_usage_and_metadata(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    call = stub.Complete(_request(), metadata=(("x-request-id", "req-abc.123"),))
    response = await call
    assert response.message.role == content_pb2.ROLE_ASSISTANT
    assert response.message.parts[0].text == "echo: hello there"
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.route.provider == "mock"
    assert response.route.model == "echo"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0
    trailing = dict(await call.trailing_metadata())
    assert trailing["homa-request-id"] == "req-abc.123"  # unary: in the trailers
    assert trailing["homa-provider"] == "mock"
    assert trailing["homa-model"] == "echo"
    assert trailing["homa-attempts"] == "1"
    assert float(trailing["homa-overhead-ms"]) >= 0.0


async def test_unsafe_request_id_is_replaced(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    call = stub.Complete(_request(), metadata=(("x-request-id", "bad id <script>"),))
    await call
    generated = dict(await call.trailing_metadata())["homa-request-id"]
    assert len(generated) == 32
    assert all(c in "0123456789abcdef" for c in generated)


async def test_invalid_request_lists_every_bad_field(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    request = chat_pb2.CompleteRequest(model="mock/echo", temperature=5.0)
    request.messages.add(role=content_pb2.ROLE_USER)
    request.tools.add(name="bad name!")
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Complete(request, metadata=(("x-request-id", "rid-1"),))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "INVALID_REQUEST"
    assert details["ErrorInfo"].domain == "homa"
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert fields == {"messages[0].parts", "temperature", "tools[0].name"}
    assert details["RequestInfo"].request_id == "rid-1"


async def test_unknown_model_is_not_found(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Complete(_request(model="nosuch/model-x"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert status_details(info.value)["ErrorInfo"].reason == "MODEL_NOT_FOUND"


async def test_rate_limit_carries_retry_info(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Complete(_request(model="mock/rate-limited"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    assert details["ErrorInfo"].metadata["provider"] == "mock"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 2.0


async def test_stream_contract_route_first_one_finish_last(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    call = stub.StreamComplete(
        _request(text="a fairly long prompt to stream back", cls=chat_pb2.StreamCompleteRequest)
    )
    assert dict(await call.initial_metadata())["homa-request-id"]  # streams: before the first message
    events = [event async for event in call]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "route"
    assert kinds[-1] == "finish"
    assert kinds.count("finish") == 1
    assert await call.code() == grpc.StatusCode.OK
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    assert text == "echo: a fairly long prompt to stream back"
    outputs = [e.usage.output_tokens for e in events if e.WhichOneof("event") == "usage"]
    assert outputs == sorted(outputs), "usage must be cumulative"
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_STOP


async def test_stream_that_dies_midway_ends_non_ok_without_finish(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    call = stub.StreamComplete(_request(model="mock/die-midway", cls=chat_pb2.StreamCompleteRequest))
    seen = []
    with pytest.raises(aio.AioRpcError) as info:
        async for event in call:
            seen.append(event.WhichOneof("event"))
    assert "delta" in seen
    assert "finish" not in seen
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_STREAM_INTERRUPTED"


async def test_streamed_tool_call_is_reassembled(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    events = [
        e async for e in stub.StreamComplete(_request(model="mock/tool", cls=chat_pb2.StreamCompleteRequest))
    ]
    fragments = "".join(
        e.tool_call_delta.arguments_json for e in events if e.WhichOneof("event") == "tool_call_delta"
    )
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].arguments_json == fragments == '{"city":"Paris"}'
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_TOOL_CALLS


async def test_deadline_is_enforced(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub.StreamComplete(
            _request(model="mock/slow", cls=chat_pb2.StreamCompleteRequest), timeout=0.3
        ):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_request_timeout_option_is_enforced_by_the_gateway(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    request = _request(model="mock/slow", cls=chat_pb2.StreamCompleteRequest)
    request.options.timeout.FromMilliseconds(300)
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub.StreamComplete(request, timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_details(info.value)["ErrorInfo"].reason == "DEADLINE_EXCEEDED"


async def test_first_token_timeout(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    request = _request(model="mock/slow", cls=chat_pb2.StreamCompleteRequest)
    request.options.first_token_timeout.FromMilliseconds(50)
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub.StreamComplete(request, timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "first token" in (info.value.details() or "")


async def test_client_cancel_stops_the_stream(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    call = stub.StreamComplete(
        _request(model="mock/slow", text="x" * 200, cls=chat_pb2.StreamCompleteRequest)
    )
    first = await call.read()
    assert first.WhichOneof("event") == "route"
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_count_tokens_uses_local_tiktoken_for_mock(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    request = chat_pb2.CountTokensRequest(model="mock/echo")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello world, this is a test")
    response = await stub.CountTokens(request)
    assert response.input_tokens == 3 + 3 + 7
    assert response.method == "tiktoken:o200k_base"


async def test_count_tokens_requires_messages(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.CountTokens(chat_pb2.CountTokensRequest(model="mock/echo"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_converse_tool_round_trip(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    outbox: asyncio.Queue[chat_pb2.ConverseRequest | None] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await outbox.get()) is not None:
            yield item

    call = stub.Converse(requests())
    start = chat_pb2.ConverseStart(model="mock/tool")
    start.tools.add(name="get_weather", description="Weather for a city")
    await outbox.put(chat_pb2.ConverseRequest(start=start))
    user = content_pb2.Message(role=content_pb2.ROLE_USER)
    user.parts.add(text="weather in Paris?")
    await outbox.put(chat_pb2.ConverseRequest(message=user))
    turn = None
    async for event in call:
        if event.WhichOneof("event") == "turn_complete":
            turn = event.turn_complete
            break
    assert turn is not None
    assert turn.reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    tool_call = turn.message.parts[0].tool_call
    assert tool_call.name == "get_weather"
    results = chat_pb2.ToolResults()
    results.results.add(tool_call_id=tool_call.id, name="get_weather", content='{"temp_c": 21}')
    await outbox.put(chat_pb2.ConverseRequest(tool_results=results))
    text = []
    async for event in call:
        kind = event.WhichOneof("event")
        if kind == "delta":
            text.append(event.delta.text)
        if kind == "turn_complete":
            turn = event.turn_complete
            break
    assert "".join(text) == 'tool results: {"temp_c": 21}'
    assert turn.reason == usage_pb2.FINISH_REASON_STOP
    await outbox.put(None)
    assert await call.code() == grpc.StatusCode.OK


async def test_converse_rejects_a_turn_before_start(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    user = content_pb2.Message(role=content_pb2.ROLE_USER)
    user.parts.add(text="hi")

    async def requests():  # type: ignore[no-untyped-def]
        yield chat_pb2.ConverseRequest(message=user)

    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub.Converse(requests()):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["BadRequest"].field_violations[0].field == "requests[0].start"


async def test_converse_requires_tool_results_after_tool_calls(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    user = content_pb2.Message(role=content_pb2.ROLE_USER)
    user.parts.add(text="hi")

    async def requests():  # type: ignore[no-untyped-def]
        yield chat_pb2.ConverseRequest(start=chat_pb2.ConverseStart(model="mock/tool"))
        yield chat_pb2.ConverseRequest(message=user)
        yield chat_pb2.ConverseRequest(message=user)

    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub.Converse(requests()):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tool_results expected" in (info.value.details() or "")
