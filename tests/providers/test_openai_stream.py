"""Streaming: SSE chunks -> homa events, errors mid-stream, truncation, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.openai_upstream import (
    MODEL_BEHAVIOURS,
    Reply,
    chunk,
    error_reply,
    example_stream,
    rate_limited_reply,
    sse_reply,
    text_stream,
    tool_calls_stream,
)

Event = chat_pb2.StreamCompleteResponse


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str, completion_id: str = "chatcmpl-fx1") -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=completion_id))  # type: ignore[arg-type]


async def test_streamed_text(openai_provider, openai_fake):
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=usage_pb2.Usage(input_tokens=61, output_tokens=16, total_tokens=77)),
        finish(usage_pb2.FINISH_REASON_STOP, "stop"),
    ]
    body = openai_fake.last.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_example_text_stream_bytes(openai_provider, openai_fake):
    # The exact bytes of provider-specs/openai/examples (no usage chunk in this one).
    openai_fake.enqueue(example_stream("chat-completions-stream-text.sse"))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert kinds(events) == ["delta", "delta", "finish"]
    assert "".join(e.delta.text for e in events) == "Hello there!"


async def test_streamed_tool_call_is_reassembled(openai_provider, openai_fake):
    openai_fake.enqueue(example_stream("chat-completions-stream-tool-call.sse"))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert events == [
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="call_fx1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"city":')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='"Paris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="call_fx1", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        Event(usage=usage_pb2.Usage(input_tokens=61, output_tokens=16, total_tokens=77)),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "tool_calls"),
    ]


async def test_parallel_tool_calls(openai_provider, openai_fake):
    openai_fake.enqueue(
        tool_calls_stream(
            [
                ("call_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                ("call_b", "get_time", ["{", '"tz": "CET"', "}"]),
            ]
        )
    )
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert kinds(events) == ["tool_call_delta"] * 8 + ["tool_call", "tool_call", "usage", "finish"]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city": "Paris"}'),
        content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"tz": "CET"}'),
    ]
    assert {e.tool_call_delta.index for e in events if e.HasField("tool_call_delta")} == {0, 1}


async def test_usage_with_cached_and_reasoning_tokens(openai_provider, openai_fake):
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    openai_fake.enqueue(text_stream(["ok"], usage=usage))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=1200,
            cached_input_tokens=1024,
            output_tokens=300,
            reasoning_tokens=256,
            total_tokens=1500,
        )
    ]


async def test_refusal_streams_as_refusal_delta(openai_provider, openai_fake):
    openai_fake.enqueue(
        sse_reply(
            [
                chunk({"role": "assistant", "content": None, "refusal": ""}),
                chunk({"refusal": "I can't"}),
                chunk({"refusal": " help with that."}),
                chunk({}, finish_reason="stop"),
            ]
        )
    )
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert [e.delta.refusal for e in events if e.HasField("delta")] == ["I can't", " help with that."]
    assert events[-1] == finish(usage_pb2.FINISH_REASON_REFUSAL, "stop")


@pytest.mark.parametrize("raw", ["length", "content_filter"])
async def test_stream_finish_reasons(openai_provider, openai_fake, raw):
    openai_fake.enqueue(text_stream(["x"], finish_reason=raw))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    expected = {
        "length": usage_pb2.FINISH_REASON_LENGTH,
        "content_filter": usage_pb2.FINISH_REASON_CONTENT_FILTER,
    }
    assert events[-1] == finish(expected[raw], raw)


async def test_exactly_one_finish_and_it_is_last(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-parallel-tools"](None))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert kinds(events).count("finish") == 1
    assert kinds(events)[-1] == "finish"


async def test_events_arrive_as_upstream_sends_them(openai_provider, openai_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    openai_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    stream = openai_provider.stream_chat(chat_request(), call_ctx())
    started = time.monotonic()
    first = await anext(stream)
    assert first.delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await stream.aclose()
    await openai_fake.wait_for_disconnect()


# ---- errors ------------------------------------------------------------------------------------


async def test_http_429_before_the_stream(openai_provider, openai_fake):
    openai_fake.enqueue(rate_limited_reply())
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 2.0


async def test_error_event_mid_stream(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-midstream-error"](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in openai_provider.stream_chat(chat_request(), call_ctx()):
            received.append(event)
    assert [e.delta.text for e in received] == ["Hel"]
    error = caught.value
    assert error.code == Code.UNAVAILABLE
    assert error.reason == Reason.UPSTREAM_UNAVAILABLE
    assert error.metadata["upstream_type"] == "server_error"
    assert "upstream_status" not in error.metadata


async def test_rate_limit_error_event_mid_stream(openai_provider, openai_fake):
    error = {
        "error": {
            "message": "Rate limit reached",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    openai_fake.enqueue(sse_reply([chunk({"content": "a"}), error], done=False))
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED


@pytest.mark.parametrize("behaviour", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_done(openai_provider, openai_fake, behaviour):
    openai_fake.enqueue(MODEL_BEHAVIOURS[behaviour](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in openai_provider.stream_chat(chat_request(), call_ctx()):
            received.append(event)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_connection_lost_mid_event(openai_provider, openai_fake):
    openai_fake.enqueue(
        sse_reply([chunk({"content": "a"}), b'data: {"id":"chatcmpl-fx1","obj'], done=False, validate=False)
    )
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_empty_body_is_interrupted(openai_provider, openai_fake):
    openai_fake.enqueue(sse_reply([], done=False))
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_malformed_json_event(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-malformed"](None))
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(openai_provider, openai_fake):
    openai_fake.enqueue(Reply(body=b'{"id":"x"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(openai_provider, openai_fake):
    openai_fake.enqueue(error_reply(400, "Invalid 'messages'.", param="messages"))
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.metadata["upstream_param"] == "messages"


async def test_keepalive_comments_are_ignored(openai_provider, openai_fake):
    openai_fake.enqueue(
        sse_reply(
            [b": ping\n\n", chunk({"content": "a"}), b": ping\r\n\r\n", chunk({}, finish_reason="stop")]
        )
    )
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert kinds(events) == ["delta", "finish"]


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    stream = openai_provider.stream_chat(chat_request(), call_ctx())
    assert (await anext(stream)).delta.text == "tok0 "
    assert (await anext(stream)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await stream.aclose()
    disconnect = await openai_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in openai_provider.stream_chat(chat_request(), call_ctx()):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await openai_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx(deadline=time.monotonic() + 0.3)))
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    await openai_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(openai_provider, openai_fake):
    openai_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx(deadline=time.monotonic() + 0.3)))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_first_token_timeout(openai_provider, openai_fake):
    openai_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(openai_provider.stream_chat(chat_request(), call_ctx(first_token_timeout=0.2)))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_first_token_timeout_does_not_limit_the_rest(openai_provider, openai_fake):
    openai_fake.enqueue(text_stream(["a", "b", "c", "d", "e"], delay=0.1))
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx(first_token_timeout=0.5)))
    assert kinds(events)[-1] == "finish"


async def test_connection_is_reused_after_done(openai_provider, openai_fake):
    for _ in range(3):
        await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    await openai_provider.complete_chat(chat_request(), call_ctx())
    ports = {r.client_port for r in openai_fake.requests}
    assert len(openai_fake.requests) == 4
    assert len(ports) == 1


async def test_generator_closed_before_start_sends_nothing(openai_provider, openai_fake):
    stream = openai_provider.stream_chat(chat_request(), call_ctx())
    with contextlib.suppress(StopAsyncIteration):
        await stream.aclose()
    assert openai_fake.requests == []


async def test_compatible_server_reasoning_deltas(openai_provider, openai_fake):
    openai_fake.enqueue(
        sse_reply(
            [
                chunk({"role": "assistant", "reasoning_content": "think"}),
                chunk({"content": "42"}),
                chunk({}, finish_reason="stop"),
            ],
            validate=False,  # reasoning_content is not an OpenAI field
        )
    )
    events = await collect(openai_provider.stream_chat(chat_request(), call_ctx()))
    assert [e.delta for e in events if e.HasField("delta")] == [
        chat_pb2.ContentDelta(reasoning="think"),
        chat_pb2.ContentDelta(text="42"),
    ]
