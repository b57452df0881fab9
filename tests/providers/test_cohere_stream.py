"""Streaming: Cohere v2 SSE events -> homa events, failures mid-stream, truncation, cancellation,
deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.cohere.result_mapping import TOOL_PLAN_SIGNATURE
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.cohere_upstream import (
    MODEL_BEHAVIOURS,
    RESPONSE_ID,
    Reply,
    citation_end,
    citation_start,
    content_delta,
    content_end,
    content_start,
    error_reply,
    example_stream,
    message_end,
    message_start,
    rate_limited_reply,
    sse_reply,
    text_stream,
    tool_call_delta,
    tool_call_start,
    tool_calls_stream,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

Event = chat_pb2.StreamCompleteResponse
MODEL = "command-a-03-2025"


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str, response_id: str = RESPONSE_ID) -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=response_id))  # type: ignore[arg-type]


def stream(provider, **ctx):
    return provider.stream_chat(chat_request(), call_ctx(MODEL, **ctx))


async def test_streamed_text(cohere_provider, cohere_fake):
    events = await collect(stream(cohere_provider))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=usage_pb2.Usage(input_tokens=71, output_tokens=3, total_tokens=74)),
        finish(usage_pb2.FINISH_REASON_STOP, "COMPLETE"),
    ]


async def test_example_text_stream_bytes(cohere_provider, cohere_fake):
    # The exact bytes of provider-specs/cohere/examples, ending with `data: [DONE]`.
    cohere_fake.enqueue(example_stream("chat-v2-stream-text.sse"))
    events = await collect(stream(cohere_provider))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(usage=usage_pb2.Usage(input_tokens=200, output_tokens=3, total_tokens=203)),
        finish(usage_pb2.FINISH_REASON_STOP, "COMPLETE", "fx-2"),
    ]


async def test_streamed_tool_call_is_reassembled_from_the_example(cohere_provider, cohere_fake):
    cohere_fake.enqueue(example_stream("chat-v2-stream-tool-call.sse"))
    events = await collect(stream(cohere_provider))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(reasoning="I will look up the weather.", reasoning_index=1)),
        Event(delta=chat_pb2.ContentDelta(reasoning_signature=TOOL_PLAN_SIGNATURE, reasoning_index=1)),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="get_weather_fx1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"city":')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='"Paris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="get_weather_fx1", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        Event(usage=usage_pb2.Usage(input_tokens=1042, output_tokens=45, total_tokens=1087)),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "TOOL_CALL", "fx-1"),
    ]


async def test_parallel_tool_calls(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        tool_calls_stream(
            [
                ("c_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                ("c_b", "get_time", ["{", '"tz": "CET"', "}"]),
            ],
            plan=["I will", " call both."],
        )
    )
    events = await collect(stream(cohere_provider))
    assert kinds(events) == (
        ["delta"] * 3
        + ["tool_call_delta"] * 4
        + ["tool_call"]
        + ["tool_call_delta"] * 4
        + ["tool_call", "usage", "finish"]
    )
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="c_a", name="get_weather", arguments_json='{"city": "Paris"}'),
        content_pb2.ToolCall(id="c_b", name="get_time", arguments_json='{"tz": "CET"}'),
    ]
    assert {e.tool_call_delta.index for e in events if e.HasField("tool_call_delta")} == {0, 1}
    assert "".join(e.delta.reasoning for e in events if e.HasField("delta")) == "I will call both."


async def test_tool_call_without_end_event_is_emitted_at_message_end(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        sse_reply(
            [
                message_start(),
                tool_call_start(0, "c1", "f"),
                tool_call_delta(0, "{}"),
                message_end("TOOL_CALL"),
            ]
        )
    )
    events = await collect(stream(cohere_provider))
    assert kinds(events) == ["tool_call_delta", "tool_call_delta", "tool_call", "usage", "finish"]
    assert events[2].tool_call == content_pb2.ToolCall(id="c1", name="f", arguments_json="{}")


async def test_thinking_streams_as_reasoning(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        sse_reply(
            [
                message_start(),
                content_start(0, "thinking"),
                content_delta("Two plus", 0, "thinking"),
                content_delta(" two.", 0, "thinking"),
                content_end(0),
                content_start(1),
                content_delta("4", 1),
                content_end(1),
                message_end(),
            ]
        )
    )
    events = await collect(stream(cohere_provider))
    assert [e.delta for e in events if e.HasField("delta")] == [
        chat_pb2.ContentDelta(reasoning="Two plus"),
        chat_pb2.ContentDelta(reasoning=" two."),
        chat_pb2.ContentDelta(text="4"),
    ]


async def test_citations_stream_as_citation_events(cohere_provider, cohere_fake):
    citation = {
        "start": 5,
        "end": 10,
        "text": "Nsync",
        "sources": [{"type": "document", "id": "doc_0", "document": {"id": "doc_0", "title": "CSPC"}}],
        "type": "TEXT_CONTENT",
    }
    cohere_fake.enqueue(
        sse_reply(
            [
                message_start(),
                content_start(0, "thinking"),
                content_delta("Look at doc_0.", 0, "thinking"),
                content_end(0),
                content_start(1),
                content_delta("Both Nsync and BSB.", 1),
                citation_start(0, {**citation, "content_index": 1}),
                citation_end(0),
                content_end(1),
                message_end(),
            ]
        )
    )
    events = await collect(stream(cohere_provider))
    assert [e.citation for e in events if e.HasField("citation")] == [
        content_pb2.Citation(title="CSPC", cited_text="Nsync", start_index=5, end_index=10, source_id="doc_0")
    ]
    assert kinds(events)[-1] == "finish"


async def test_usage_with_cached_tokens(cohere_provider, cohere_fake):
    usage = {
        "billed_units": {"input_tokens": 10},
        "tokens": {"input_tokens": 1200, "output_tokens": 30},
        "cached_tokens": 1024,
    }
    cohere_fake.enqueue(text_stream(["ok"], usage=usage))
    events = await collect(stream(cohere_provider))
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(input_tokens=1200, cached_input_tokens=1024, output_tokens=30, total_tokens=1230)
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("MAX_TOKENS", usage_pb2.FINISH_REASON_LENGTH), ("STOP_SEQUENCE", usage_pb2.FINISH_REASON_STOP)],
)
async def test_stream_finish_reasons(cohere_provider, cohere_fake, raw, reason):
    cohere_fake.enqueue(text_stream(["x"], finish_reason=raw))
    events = await collect(stream(cohere_provider))
    assert events[-1] == finish(reason, raw)


async def test_done_is_optional(cohere_provider, cohere_fake):
    cohere_fake.enqueue(text_stream(["a"], done=False))
    events = await collect(stream(cohere_provider))
    assert kinds(events) == ["delta", "usage", "finish"]


async def test_debug_and_unknown_events_and_comments_are_ignored(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        sse_reply(
            [
                b": keep-alive\n\n",
                message_start(),
                b'event: debug\ndata: {"type":"debug","prompt":"<prompt>"}\n\n',
                b'event: future-thing\ndata: {"type":"future-thing","x":1}\n\n',
                content_start(),
                content_delta("a"),
                message_end(),
            ],
            validate=False,  # the spec's debug event schema is the v1 one (`event_type`)
        )
    )
    events = await collect(stream(cohere_provider))
    assert kinds(events) == ["delta", "usage", "finish"]


async def test_events_arrive_as_upstream_sends_them(cohere_provider, cohere_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    cohere_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    events = stream(cohere_provider)
    started = time.monotonic()
    first = await anext(events)
    assert first.delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await events.aclose()
    await cohere_fake.wait_for_disconnect()


# ---- failures ----------------------------------------------------------------------------------


async def test_http_429_before_the_stream(cohere_provider, cohere_fake):
    cohere_fake.enqueue(rate_limited_reply())
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 60.0


async def test_error_finish_mid_stream_ends_non_ok_after_usage(cohere_provider, cohere_fake):
    cohere_fake.enqueue(MODEL_BEHAVIOURS["fake-midstream-error"](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in stream(cohere_provider):
            received.append(event)
    assert kinds(received) == ["delta", "usage"]  # usage first, so the partial call can be settled
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (Code.UNAVAILABLE, Reason.UPSTREAM_ERROR, True)
    assert "generation failed" in error.message
    assert error.metadata["upstream_finish_reason"] == "ERROR"
    assert "upstream_status" not in error.metadata


async def test_timeout_finish_mid_stream(cohere_provider, cohere_fake):
    cohere_fake.enqueue(text_stream(["a"], finish_reason="TIMEOUT"))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_error_object_mid_stream(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        sse_reply(
            [
                message_start(),
                content_start(),
                content_delta("a"),
                b'data: {"message":"internal server error"}\n\n',
            ],
            done=False,
            validate=False,
        )
    )
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_ERROR
    assert caught.value.code == Code.UNAVAILABLE


@pytest.mark.parametrize("behaviour", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_message_end(cohere_provider, cohere_fake, behaviour):
    cohere_fake.enqueue(MODEL_BEHAVIOURS[behaviour](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in stream(cohere_provider):
            received.append(event)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert caught.value.retryable
    assert kinds(received) == ["delta"]


async def test_done_before_message_end_is_interrupted(cohere_provider, cohere_fake):
    cohere_fake.enqueue(sse_reply([message_start(), content_start(), content_delta("a")], done=True))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "[DONE]" in caught.value.message


async def test_connection_lost_mid_event(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        sse_reply(
            [message_start(), b'event: content-delta\ndata: {"type":"content-de'], done=False, validate=False
        )
    )
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_empty_body_is_interrupted(cohere_provider, cohere_fake):
    cohere_fake.enqueue(sse_reply([], done=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


@pytest.mark.parametrize(
    "frame",
    [
        b"data: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"no": "type"}\n\n',
        b'event: content-delta\ndata: {"type":"content-delta","delta":{}}\n\n',
        b'event: tool-call-delta\ndata: {"type":"tool-call-delta","index":3,'
        b'"delta":{"message":{"tool_calls":{"function":{"arguments":"x"}}}}}\n\n',
    ],
    ids=["bad-json", "not-an-object", "no-type", "wrong-shape", "arguments-before-start"],
)
async def test_malformed_events_are_protocol_errors(cohere_provider, cohere_fake, frame):
    cohere_fake.enqueue(sse_reply([message_start(), frame], validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(cohere_provider, cohere_fake):
    cohere_fake.enqueue(Reply(body=b'{"id":"x"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(400, "invalid request: message must not be empty in a turn"))
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.UPSTREAM_INVALID_REQUEST
    assert caught.value.metadata["upstream_status"] == "400"


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(cohere_provider, cohere_fake):
    cohere_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    events = stream(cohere_provider)
    assert (await anext(events)).delta.text == "tok0 "
    assert (await anext(events)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await events.aclose()
    disconnect = await cohere_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(cohere_provider, cohere_fake):
    cohere_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream(cohere_provider):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await cohere_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(cohere_provider, cohere_fake):
    cohere_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    await cohere_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(cohere_provider, cohere_fake):
    cohere_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_first_token_timeout(cohere_provider, cohere_fake):
    cohere_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(stream(cohere_provider, first_token_timeout=0.2))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_unary_deadline(cohere_provider, cohere_fake):
    cohere_fake.enqueue(Reply(body=b"{}", delay=2.0, validate=False))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await cohere_provider.complete_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_connection_is_reused_after_message_end(cohere_provider, cohere_fake):
    for _ in range(3):
        await collect(stream(cohere_provider))
    await cohere_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert len(cohere_fake.requests) == 4
    assert len({r.client_port for r in cohere_fake.requests}) == 1


async def test_generator_closed_before_start_sends_nothing(cohere_provider, cohere_fake):
    events = stream(cohere_provider)
    with contextlib.suppress(StopAsyncIteration):
        await events.aclose()
    assert cohere_fake.requests == []
