"""Streaming: Anthropic SSE events -> homa events, errors mid-stream, truncation, cancellation,
deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.anthropic.messages_stream import MessageStreamDecoder
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import (
    MODEL_BEHAVIOURS,
    PING,
    Reply,
    block_delta,
    block_start,
    block_stop,
    error_reply,
    event,
    example_stream,
    message_delta,
    message_start,
    rate_limited_reply,
    sse_reply,
    stream_events,
    text_block,
    text_block_stream,
    text_stream,
    tool_use_block_stream,
    tool_use_stream,
    usage,
)

anthropic_upstream, anthropic_fake, anthropic_provider = (
    fx.anthropic_upstream,
    fx.anthropic_fake,
    fx.anthropic_provider,
)

Event = chat_pb2.StreamCompleteResponse
MODEL = "claude-sonnet-4-5"


def ctx(**fields: object):
    return call_ctx(MODEL, **fields)


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str, message_id: str = "msg_fx1") -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=message_id))  # type: ignore[arg-type]


async def test_streamed_text(anthropic_provider, anthropic_fake):
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert events == [
        Event(usage=usage_pb2.Usage(input_tokens=25, output_tokens=1, total_tokens=26)),
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=usage_pb2.Usage(input_tokens=25, output_tokens=12, total_tokens=37)),
        finish(usage_pb2.FINISH_REASON_STOP, "end_turn"),
    ]
    assert anthropic_fake.last.body["stream"] is True


async def test_example_tool_use_stream_is_reassembled(anthropic_provider, anthropic_fake):
    # The exact bytes of provider-specs/anthropic/examples/messages-stream-tool-use.sse.
    anthropic_fake.enqueue(example_stream("messages-stream-tool-use.sse"))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert events == [
        Event(usage=usage_pb2.Usage(input_tokens=472, output_tokens=2, total_tokens=474)),
        Event(delta=chat_pb2.ContentDelta(text="Let me check the weather.")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="toolu_fx1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"city": "Pa')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='ris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="toolu_fx1", name="get_weather", arguments_json='{"city": "Paris"}'
            )
        ),
        Event(usage=usage_pb2.Usage(input_tokens=472, output_tokens=89, total_tokens=561)),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "tool_use"),
    ]


async def test_parallel_tool_calls(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(
        tool_use_stream(
            [
                ("toolu_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                ("toolu_b", "get_time", ["{", '"tz": "CET"', "}"]),
            ]
        )
    )
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert kinds(events) == [
        "usage",
        "delta",
        *["tool_call_delta"] * 4,
        "tool_call",
        *["tool_call_delta"] * 4,
        "tool_call",
        "usage",
        "finish",
    ]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="toolu_a", name="get_weather", arguments_json='{"city": "Paris"}'),
        content_pb2.ToolCall(id="toolu_b", name="get_time", arguments_json='{"tz": "CET"}'),
    ]
    # homa indexes calls by position among the turn's tool calls, not by Anthropic block index.
    fragments = [e.tool_call_delta for e in events if e.HasField("tool_call_delta")]
    assert [f.index for f in fragments] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [(f.id, f.name) for f in fragments if f.id] == [
        ("toolu_a", "get_weather"),
        ("toolu_b", "get_time"),
    ]


async def test_tool_call_without_input_pieces(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(
        sse_reply(stream_events([tool_use_block_stream("toolu_1", "now", [])], stop_reason="tool_use"))
    )
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="toolu_1", name="now", arguments_json="{}")
    ]


async def test_thinking_and_signature_deltas(anthropic_provider, anthropic_fake):
    thinking = [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "think."},
        {"type": "signature_delta", "signature": "EqQBCkYIBxgC"},
    ]
    redacted = [{"type": "redacted_thinking", "data": "EmwKAhgB"}]
    anthropic_fake.enqueue(sse_reply(stream_events([thinking, redacted, text_block_stream(["42"])])))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert [e.delta for e in events if e.HasField("delta")] == [
        chat_pb2.ContentDelta(reasoning="Let me "),
        chat_pb2.ContentDelta(reasoning="think."),
        chat_pb2.ContentDelta(reasoning_signature=b"EqQBCkYIBxgC"),
        chat_pb2.ContentDelta(reasoning_signature=b"EmwKAhgB", reasoning_redacted=True, reasoning_index=1),
        chat_pb2.ContentDelta(text="42"),
    ]


async def test_usage_with_cache_and_thinking_tokens(anthropic_provider, anthropic_fake):
    start = usage(100, 1, cache_read=2000, cache_write=500)
    events_in = stream_events(
        [text_block_stream(["ok"])],
        start_usage=start,
        output_tokens=300,
        output_tokens_details={"thinking_tokens": 120},
    )
    anthropic_fake.enqueue(sse_reply(events_in))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=2600,
            cached_input_tokens=2000,
            cache_write_tokens=500,
            output_tokens=1,
            total_tokens=2601,
        ),
        usage_pb2.Usage(
            input_tokens=2600,
            cached_input_tokens=2000,
            cache_write_tokens=500,
            output_tokens=300,
            reasoning_tokens=120,
            total_tokens=2900,
        ),
    ]


async def test_message_delta_counts_override_message_start(anthropic_provider, anthropic_fake):
    events_in = stream_events(
        [text_block_stream(["ok"])], output_tokens=9, input_tokens=40, cache_read_input_tokens=10
    )
    anthropic_fake.enqueue(sse_reply(events_in))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert events[-2].usage == usage_pb2.Usage(
        input_tokens=50, cached_input_tokens=10, output_tokens=9, total_tokens=59
    )


async def test_citations_are_emitted_with_their_block_span(anthropic_provider, anthropic_fake):
    citation = {
        "type": "char_location",
        "cited_text": "The sky is blue.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 0,
        "end_char_index": 16,
        "file_id": None,
    }
    cited = [
        text_block("", []),
        {"type": "citations_delta", "citation": citation},
        {"type": "text_delta", "text": "blue"},
    ]
    anthropic_fake.enqueue(sse_reply(stream_events([text_block_stream(["The sky is "]), cited])))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert kinds(events) == ["usage", "delta", "delta", "citation", "usage", "finish"]
    assert events[3].citation == content_pb2.Citation(
        title="Facts", cited_text="The sky is blue.", start_index=11, end_index=15, source_id="document:0"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("max_tokens", usage_pb2.FINISH_REASON_LENGTH),
        ("stop_sequence", usage_pb2.FINISH_REASON_STOP),
        ("pause_turn", usage_pb2.FINISH_REASON_PAUSE),
        ("refusal", usage_pb2.FINISH_REASON_REFUSAL),
    ],
)
async def test_stream_finish_reasons(anthropic_provider, anthropic_fake, raw, reason):
    anthropic_fake.enqueue(text_stream(["x"], stop_reason=raw))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert events[-1] == finish(reason, raw)


async def test_exactly_one_finish_and_it_is_last(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(tool_use_stream([("toolu_a", "f", ["{}"]), ("toolu_b", "g", ["{}"])]))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert kinds(events).count("finish") == 1
    assert kinds(events)[-1] == "finish"


async def test_pings_and_unknown_events_are_ignored(anthropic_provider, anthropic_fake):
    events_in = stream_events([text_block_stream(["a"])])
    frames = [
        event(PING),
        *map(event, events_in[:2]),
        b'event: future_event\ndata: {"type":"future_event"}\n\n',
        *map(event, events_in[2:]),
    ]
    anthropic_fake.enqueue(sse_reply(frames, validate=False))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert kinds(events) == ["usage", "delta", "usage", "finish"]


async def test_events_arrive_as_upstream_sends_them(anthropic_provider, anthropic_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    anthropic_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    stream = anthropic_provider.stream_chat(chat_request(), ctx())
    started = time.monotonic()
    assert (await anext(stream)).HasField("usage")
    assert (await anext(stream)).delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await stream.aclose()
    await anthropic_fake.wait_for_disconnect()


# ---- errors ------------------------------------------------------------------------------------


async def test_http_429_before_the_stream(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(rate_limited_reply())
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 7.0


async def test_overloaded_error_event_mid_stream(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(MODEL_BEHAVIOURS["fake-midstream-error"](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for item in anthropic_provider.stream_chat(chat_request(), ctx()):
            received.append(item)
    assert [e.delta.text for e in received if e.HasField("delta")] == ["Hel"]
    assert "finish" not in kinds(received)
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    )
    assert error.metadata["upstream_type"] == "overloaded_error"
    assert error.metadata["upstream_request_id"] == "req_fx1"
    assert "upstream_status" not in error.metadata


@pytest.mark.parametrize(
    ("error_type", "reason"),
    [
        ("rate_limit_error", Reason.UPSTREAM_RATE_LIMITED),
        ("api_error", Reason.UPSTREAM_UNAVAILABLE),
        ("invalid_request_error", Reason.UPSTREAM_INVALID_REQUEST),
    ],
)
async def test_other_error_events_mid_stream(anthropic_provider, anthropic_fake, error_type, reason):
    error = fx.error_body(error_type, "boom", None)
    anthropic_fake.enqueue(sse_reply([*stream_events([text_block_stream(["a"])], stop=False)[:3], error]))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == reason


@pytest.mark.parametrize("end", ["close", "abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_message_stop(anthropic_provider, anthropic_fake, end):
    anthropic_fake.enqueue(text_stream(stop=False, end=end))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for item in anthropic_provider.stream_chat(chat_request(), ctx()):
            received.append(item)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_connection_lost_mid_event(anthropic_provider, anthropic_fake):
    frames = [event(message_start()), b'event: content_block_start\ndata: {"type":"content_blo']
    anthropic_fake.enqueue(sse_reply(frames, validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_empty_body_is_interrupted(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(sse_reply([]))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


@pytest.mark.parametrize(
    "frames",
    [
        [b"event: message_start\ndata: {not json\n\n"],
        [event(message_start()), event(block_delta(3, {"type": "text_delta", "text": "x"}))],
        [
            event(message_start()),
            event(block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}})),
            event(block_delta(0, {"type": "input_json_delta", "partial_json": '{"a": '})),
            event(block_stop(0)),
        ],
        [
            event(message_start()),
            event(block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}})),
            event(block_delta(0, {"type": "input_json_delta", "partial_json": "[1]"})),
            event(block_stop(0)),
        ],
        [
            event(message_start()),
            event(block_start(0, text_block(""))),
            event(block_delta(0, {"type": "input_json_delta", "partial_json": "{}"})),
        ],
        [b'event: message_start\ndata: {"type":"message_start"}\n\n'],
        [b"event: message_start\ndata: [1]\n\n"],
    ],
    ids=[
        "bad-json",
        "unknown-block",
        "truncated-tool-json",
        "non-object-tool-input",
        "wrong-delta-kind",
        "no-message",
        "not-object",
    ],
)
async def test_malformed_streams_are_protocol_errors(anthropic_provider, anthropic_fake, frames):
    anthropic_fake.enqueue(sse_reply(frames, validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(fx.json_reply(fx.message()))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(error_reply(400, "invalid_request_error", "messages.0.content: Field required"))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.metadata["upstream_status"] == "400"
    assert "Field required" in caught.value.message


def test_open_tool_block_is_flushed_before_finish():
    decoder = MessageStreamDecoder("anthropic", MODEL)
    payloads = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        block_delta(0, {"type": "input_json_delta", "partial_json": '{"a": 1}'}),
        message_delta("tool_use", 3),
        {"type": "message_stop"},
    ]
    events = [e for p in payloads for e in decoder.feed(orjson.dumps(p))]
    assert kinds(events)[-2:] == ["tool_call", "finish"]
    assert decoder.done


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    stream = anthropic_provider.stream_chat(chat_request(), ctx())
    assert (await anext(stream)).HasField("usage")
    assert (await anext(stream)).delta.text == "tok0 "
    closed_at = time.monotonic()
    await stream.aclose()
    disconnect = await anthropic_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(
    anthropic_provider, anthropic_fake
):
    anthropic_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    first = asyncio.Event()

    async def consume() -> None:
        async for item in anthropic_provider.stream_chat(chat_request(), ctx()):
            if item.HasField("delta"):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await anthropic_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx(deadline=time.monotonic() + 0.3)))
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    await anthropic_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx(deadline=time.monotonic() + 0.3)))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_unary_deadline(anthropic_provider, anthropic_fake):
    slow = fx.json_reply(fx.message())
    slow.delay = 2.0
    anthropic_fake.enqueue(slow)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.complete_chat(chat_request(), ctx(deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)


async def test_spent_deadline_sends_nothing(anthropic_provider, anthropic_fake):
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.complete_chat(chat_request(), ctx(deadline=time.monotonic() - 1))
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert anthropic_fake.requests == []


async def test_first_token_timeout(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx(first_token_timeout=0.2)))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_first_token_timeout_does_not_limit_the_rest(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(text_stream(["a", "b", "c", "d", "e"], delay=0.1))
    events = await collect(anthropic_provider.stream_chat(chat_request(), ctx(first_token_timeout=0.5)))
    assert kinds(events)[-1] == "finish"


async def test_connection_is_reused_after_message_stop(anthropic_provider, anthropic_fake):
    for _ in range(3):
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    await anthropic_provider.complete_chat(chat_request(), ctx())
    assert len(anthropic_fake.requests) == 4
    assert len({r.client_port for r in anthropic_fake.requests}) == 1


async def test_generator_closed_before_start_sends_nothing(anthropic_provider, anthropic_fake):
    stream = anthropic_provider.stream_chat(chat_request(), ctx())
    with contextlib.suppress(StopAsyncIteration):
        await stream.aclose()
    assert anthropic_fake.requests == []


async def test_reply_without_event_stream_type(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(Reply(body=b"", content_type="text/plain", validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(), ctx()))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
