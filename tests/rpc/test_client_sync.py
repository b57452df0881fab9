"""HomaClient (blocking) against the in-process gateway served from a background thread."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from homa.type.v1 import usage_pb2
from homa_client import (
    AsyncHomaClient,
    ChatRequestBuilder,
    DeadlineExceededError,
    HomaClient,
    InvalidArgumentError,
    RateLimitError,
    UnavailableError,
    text_of,
)
from tests.rpc.test_client_support import ThreadedGateway, closed_port_target


@pytest.fixture(scope="module")
def gateway() -> Iterator[ThreadedGateway]:
    with ThreadedGateway() as running:
        yield running


@pytest.fixture
def client(gateway: ThreadedGateway) -> Iterator[HomaClient]:
    with HomaClient(gateway.target, timeout=10) as homa:
        yield homa


def test_complete(client: HomaClient) -> None:
    response = client.chat.complete(ChatRequestBuilder("mock/echo").user("sync hello"), request_id="sync-1")

    assert text_of(response.message) == "echo: sync hello"
    assert client.last_call is not None
    assert client.last_call.request_id == "sync-1"
    assert client.last_call.provider == "mock"


def test_stream_is_a_plain_iterator(client: HomaClient) -> None:
    with client.chat.stream(ChatRequestBuilder("mock/echo").user("streaming in sync")) as stream:
        events = list(stream)

    assert events[0].HasField("route")
    assert events[-1].HasField("finish")
    assert "".join(e.delta.text for e in events if e.HasField("delta")) == "echo: streaming in sync"
    assert stream.call_info is not None
    assert stream.call_info.code is grpc.StatusCode.OK


def test_closing_a_stream_cancels_it(client: HomaClient) -> None:
    started = time.monotonic()
    stream = client.chat.stream(ChatRequestBuilder("mock/slow").user("a long enough prompt for many chunks"))
    assert next(stream).HasField("route")
    stream.close()

    assert list(stream) == []
    assert time.monotonic() - started < 1.0


def test_collect_with_tool_call(client: HomaClient) -> None:
    result = client.chat.collect(ChatRequestBuilder("mock/tool").user("Weather?"))

    [call] = result.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments_json) == {"city": "Paris"}
    assert result.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert result.request_id


def test_die_midway_raises_unavailable_after_deltas(client: HomaClient) -> None:
    deltas = []
    with pytest.raises(UnavailableError) as caught:
        for event in client.chat.stream(ChatRequestBuilder("mock/die-midway").user("go")):
            if event.HasField("delta"):
                deltas.append(event.delta.text)

    assert deltas
    assert caught.value.reason == "UPSTREAM_STREAM_INTERRUPTED"


def test_rate_limited(client: HomaClient) -> None:
    with pytest.raises(RateLimitError) as caught:
        client.chat.complete(ChatRequestBuilder("mock/rate-limited").user("hi"))

    assert caught.value.retry_after == 2.0
    assert caught.value.reason == "UPSTREAM_RATE_LIMITED"


def test_invalid_request(client: HomaClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.chat.complete(ChatRequestBuilder("mock/echo").user("hi").max_output_tokens(0))

    assert [v.field for v in caught.value.field_violations] == ["max_output_tokens"]


def test_deadline(client: HomaClient) -> None:
    with pytest.raises(DeadlineExceededError):
        client.chat.collect(ChatRequestBuilder("mock/slow").user("a long enough prompt"), timeout=0.3)


def test_count_tokens(client: HomaClient) -> None:
    assert client.chat.count_tokens(ChatRequestBuilder("mock/echo").user("count me")).input_tokens > 0


def test_converse(client: HomaClient) -> None:
    with client.chat.converse("mock/tool") as conversation:
        turn = conversation.send("Weather?")
        [call] = turn.tool_calls
        turn = conversation.send_tool_results({call.id: "sunny"})
        assert turn.text == "tool results: sunny"
    assert conversation.call_info is not None
    assert conversation.call_info.code is grpc.StatusCode.OK


def test_converse_cancel(client: HomaClient) -> None:
    conversation = client.chat.converse("mock/echo")
    assert conversation.send("hi").text == "echo: hi"
    conversation.cancel()
    with pytest.raises(RuntimeError):
        conversation.send("again")


def test_admin(client: HomaClient) -> None:
    ids = [model.id for model in client.admin.list_models(page_size=1)]

    assert "mock/echo" in ids
    assert ids == sorted(ids)
    assert client.admin.get_model("mock/tool").provider_model == "tool"
    assert [p.kind for p in client.admin.list_providers()] == ["local", "mock"]
    assert client.admin.server_info().service_name == "homa"


def test_last_call_is_per_thread(client: HomaClient) -> None:
    seen: dict[str, str] = {}

    def call(request_id: str) -> None:
        client.chat.complete(ChatRequestBuilder("mock/echo").user("x"), request_id=request_id)
        assert client.last_call is not None
        seen[request_id] = client.last_call.request_id

    threads = [threading.Thread(target=call, args=(f"thread-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {f"thread-{i}": f"thread-{i}" for i in range(4)}
    assert client.last_call is None  # nothing was called on this thread


def test_connection_refused() -> None:
    with HomaClient(closed_port_target(), timeout=5) as homa, pytest.raises(UnavailableError) as caught:
        homa.admin.server_info()

    assert not caught.value.from_gateway
    assert "connection refused" in caught.value.message.lower()


def test_async_client_may_be_created_outside_an_event_loop(gateway: ThreadedGateway) -> None:
    """The async client opens its channel on the first call's loop (and again after close())."""
    homa = AsyncHomaClient(gateway.target, timeout=10)

    async def service_name() -> str:
        async with homa:
            return (await homa.admin.server_info()).service_name

    assert asyncio.run(service_name()) == "homa"
    assert asyncio.run(service_name()) == "homa"


def test_dropped_conversation_releases_the_request_thread(client: HomaClient) -> None:
    before = set(threading.enumerate())
    conversation = client.chat.converse("mock/echo")
    assert conversation.send("hi").text == "echo: hi"
    started = set(threading.enumerate()) - before  # gRPC reads our request iterator on a thread
    assert started

    del conversation
    gc.collect()

    for thread in started:
        thread.join(timeout=5)
        assert not thread.is_alive(), thread.name
