"""Streaming: NDJSON lines -> homa events, errors mid-stream, truncation, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.ollama.chat_stream import ChatStreamDecoder
from homa_server.providers.ollama.error_mapping import ErrorMapper
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    MODEL_BEHAVIOURS,
    Reply,
    error_reply,
    example_stream,
    final_line,
    ndjson_reply,
    ollama_fake_fixture,
    ollama_provider_fixture,
    ollama_upstream_fixture,
    rate_limited_reply,
    stream_line,
    text_stream,
    tool_call_stream,
)

Event = chat_pb2.StreamCompleteResponse
USAGE = usage_pb2.Usage(input_tokens=26, output_tokens=18, total_tokens=44)


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str = "stop") -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw))  # type: ignore[arg-type]


def stream(provider, model: str = "llama3.2", **ctx):
    return provider.stream_chat(chat_request(), call_ctx(model, **ctx))


async def test_streamed_text(ollama_provider, ollama_fake):
    events = await collect(stream(ollama_provider))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hel")),
        Event(delta=chat_pb2.ContentDelta(text="lo")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=USAGE),
        finish(usage_pb2.FINISH_REASON_STOP),
    ]
    assert ollama_fake.last.body["stream"] is True


async def test_example_tool_call_stream_bytes(ollama_provider, ollama_fake):
    # The exact bytes of provider-specs/ollama/examples: the call arrives whole, then done:true.
    ollama_fake.enqueue(example_stream("chat-stream-tool-call.ndjson"))
    events = await collect(stream(ollama_provider))
    call = content_pb2.ToolCall(id="call_0", name="get_weather", arguments_json='{"city":"Paris"}')
    assert events == [
        Event(
            tool_call_delta=chat_pb2.ToolCallDelta(
                index=0, id="call_0", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        Event(tool_call=call),
        Event(usage=USAGE),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS),
    ]


@pytest.mark.parametrize("per_line", [False, True], ids=["one-line", "line-per-call"])
async def test_parallel_tool_calls(ollama_provider, ollama_fake, per_line):
    ollama_fake.enqueue(
        tool_call_stream(
            [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
            per_line=per_line,
            content="Checking.",
        )
    )
    events = await collect(stream(ollama_provider))
    assert kinds(events) == [
        "delta",
        "tool_call_delta",
        "tool_call",
        "tool_call_delta",
        "tool_call",
        "usage",
        "finish",
    ]
    deltas = [e.tool_call_delta for e in events if e.HasField("tool_call_delta")]
    assert [(d.index, d.id, d.name) for d in deltas] == [
        (0, "call_0", "get_weather"),
        (1, "call_1", "get_time"),
    ]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="call_0", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_1", name="get_time", arguments_json='{"tz":"CET"}'),
    ]
    assert events[-1] == finish(usage_pb2.FINISH_REASON_TOOL_CALLS)


async def test_tool_call_deltas_reassemble_to_the_whole_call(ollama_provider, ollama_fake):
    ollama_fake.enqueue(MODEL_BEHAVIOURS["fake-parallel-tools"](None))
    events = await collect(stream(ollama_provider))
    assembled: dict[int, list[str]] = {}
    for event in events:
        if event.HasField("tool_call_delta"):
            assembled.setdefault(event.tool_call_delta.index, []).append(event.tool_call_delta.arguments_json)
    whole = [e.tool_call.arguments_json for e in events if e.HasField("tool_call")]
    assert ["".join(pieces) for _, pieces in sorted(assembled.items())] == whole


async def test_thinking_streams_as_reasoning(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["2"], thinking=["1+1", " is 2."]))
    events = await collect(stream(ollama_provider))
    assert [e.delta for e in events if e.HasField("delta")] == [
        chat_pb2.ContentDelta(reasoning="1+1"),
        chat_pb2.ContentDelta(reasoning=" is 2."),
        chat_pb2.ContentDelta(text="2"),
    ]


async def test_content_on_the_final_line_comes_before_finish(ollama_provider, ollama_fake):
    # streaming.mdx: the final object may itself carry the last piece of text.
    ollama_fake.enqueue(ndjson_reply([stream_line("That"), final_line("stop", content="!")]))
    events = await collect(stream(ollama_provider))
    assert kinds(events) == ["delta", "delta", "usage", "finish"]
    assert "".join(e.delta.text for e in events) == "That!"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("length", usage_pb2.FINISH_REASON_LENGTH), ("load", usage_pb2.FINISH_REASON_UNSPECIFIED)],
)
async def test_stream_finish_reasons(ollama_provider, ollama_fake, raw, reason):
    ollama_fake.enqueue(text_stream(["x"], done_reason=raw))
    events = await collect(stream(ollama_provider))
    assert events[-1] == finish(reason, raw)


async def test_final_line_without_counts_has_no_usage(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["x"], counts={}))
    assert kinds(await collect(stream(ollama_provider))) == ["delta", "finish"]


async def test_exactly_one_finish_and_it_is_last(ollama_provider, ollama_fake):
    events = await collect(stream(ollama_provider, "fake-parallel-tools"))
    assert kinds(events).count("finish") == 1
    assert kinds(events)[-1] == "finish"


async def test_lines_after_done_are_not_read_as_events(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["a"]), text_stream(["b"]))
    first = await collect(stream(ollama_provider))
    second = await collect(stream(ollama_provider))
    assert [e.delta.text for e in first + second if e.HasField("delta")] == ["a", "b"]


def test_decoder_refuses_lines_after_the_final_one():
    decoder = ChatStreamDecoder(ErrorMapper("ollama", None, None), "m")
    decoder.feed(b'{"done":true,"done_reason":"stop"}')
    with pytest.raises(GatewayError) as caught:
        decoder.feed(b'{"message":{"content":"late"},"done":false}')
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_events_arrive_as_upstream_sends_them(ollama_provider, ollama_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    ollama_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    events = stream(ollama_provider)
    started = time.monotonic()
    first = await anext(events)
    assert first.delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await events.aclose()
    await ollama_fake.wait_for_disconnect()


async def test_connection_is_reused_after_done(ollama_provider, ollama_fake):
    for _ in range(3):
        await collect(stream(ollama_provider))
    await ollama_provider.complete_chat(chat_request(), call_ctx("llama3.2"))
    assert len(ollama_fake.requests) == 4
    assert len({r.client_port for r in ollama_fake.requests}) == 1


# ---- errors ------------------------------------------------------------------------------------


async def test_error_line_mid_stream(ollama_provider, ollama_fake):
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in stream(ollama_provider, "fake-midstream-error"):
            received.append(event)
    assert [e.delta.text for e in received] == ["Hel", "lo"]
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    )
    assert "an error was encountered while running the model" in error.message
    assert "upstream_status" not in error.metadata
    assert error.metadata["model"] == "fake-midstream-error"


async def test_context_error_line_mid_stream(ollama_provider, ollama_fake):
    ollama_fake.enqueue(
        ndjson_reply([stream_line("a"), {"error": "input length exceeds the context length"}])
    )
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert (caught.value.code, caught.value.reason) == (Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED)


async def test_http_429_before_the_stream(ollama_provider, ollama_fake):
    ollama_fake.enqueue(rate_limited_reply({"retry-after": "3"}))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert (caught.value.code, caught.value.reason) == (Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED)
    assert caught.value.retry_after == 3.0


async def test_http_404_on_a_stream_request(ollama_provider, ollama_fake):
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider, "fake-404"))
    assert (caught.value.code, caught.value.reason) == (Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND)
    assert caught.value.metadata["upstream_status"] == "404"


@pytest.mark.parametrize("behaviour", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_done(ollama_provider, ollama_fake, behaviour):
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in stream(ollama_provider, behaviour):
            received.append(event)
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_STREAM_INTERRUPTED)
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_connection_lost_mid_line(ollama_provider, ollama_fake):
    ollama_fake.enqueue(ndjson_reply([stream_line("a"), b'{"model":"llama3.2","mess'], validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of a line" in caught.value.message


async def test_empty_body_is_interrupted(ollama_provider, ollama_fake):
    ollama_fake.enqueue(ndjson_reply([]))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


@pytest.mark.parametrize(
    "line",
    [
        b"{not json\n",
        b"[1,2]\n",
        b'{"message":{"tool_calls":[{"function":{}}]},"done":false}\n',
        b'{"done":"yes"}\n',
    ],
    ids=["malformed", "array", "bad-tool-call", "bad-done"],
)
async def test_malformed_lines_are_protocol_errors(ollama_provider, ollama_fake, line):
    ollama_fake.enqueue(ndjson_reply([stream_line("a"), line], validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(ollama_provider, ollama_fake):
    ollama_fake.enqueue(Reply(body=b'{"done":true}\n', validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_500_on_a_stream_request(ollama_provider, ollama_fake):
    ollama_fake.enqueue(error_reply(500, "llama runner process has terminated: exit status 2"))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider))
    assert (caught.value.code, caught.value.retryable) == (Code.UNAVAILABLE, True)


# ---- cancellation and deadlines ----------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(ollama_provider, ollama_fake):
    events = stream(ollama_provider, "fake-slow")
    assert (await anext(events)).delta.text == "tok0 "
    assert (await anext(events)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await events.aclose()
    disconnect = await ollama_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(ollama_provider, ollama_fake):
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream(ollama_provider, "fake-slow"):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await ollama_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(ollama_provider, ollama_fake):
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider, "fake-slow", deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)
    await ollama_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_unary_deadline(ollama_provider, ollama_fake):
    ollama_fake.enqueue(Reply(body=b"{}", delay=5.0, validate=False))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await ollama_provider.complete_chat(
            chat_request(), call_ctx("llama3.2", deadline=time.monotonic() + 0.3)
        )
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)


async def test_spent_deadline_sends_nothing(ollama_provider, ollama_fake):
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider, deadline=time.monotonic() - 1))
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert ollama_fake.requests == []


async def test_first_token_timeout(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(ollama_provider, first_token_timeout=0.2))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_first_token_timeout_does_not_limit_the_rest(ollama_provider, ollama_fake):
    ollama_fake.enqueue(text_stream(["a", "b", "c", "d", "e"], delay=0.1))
    events = await collect(stream(ollama_provider, first_token_timeout=0.5))
    assert kinds(events)[-1] == "finish"


async def test_generator_closed_before_start_sends_nothing(ollama_provider, ollama_fake):
    events = stream(ollama_provider)
    with contextlib.suppress(StopAsyncIteration):
        await events.aclose()
    assert ollama_fake.requests == []
