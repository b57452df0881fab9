"""Streaming: Venice SSE chunks -> homa events, errors mid-stream, truncation, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.venice.reasoning import decode_signature
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.openai_upstream import Reply
from tests.providers.fakes.venice_upstream import (
    USAGE,
    chunk,
    error_reply,
    rate_limited_reply,
    sse_reply,
    text_stream,
    tool_calls_stream,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_provider_fixture as _venice_provider  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401

Event = chat_pb2.StreamCompleteResponse
MODEL = "zai-org-glm-5-1"
BASE_USAGE = usage_pb2.Usage(input_tokens=612, output_tokens=146, total_tokens=758)


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str) -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id="chatcmpl-venice-fx1"))  # type: ignore[arg-type]


def slow_stream() -> Reply:
    return text_stream([f"tok{i} " for i in range(200)], delay=0.05)


async def test_streamed_text(venice_provider, venice_fake):
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=BASE_USAGE),
        finish(usage_pb2.FINISH_REASON_STOP, "stop"),
    ]


async def test_streamed_tool_call_is_reassembled(venice_provider, venice_fake):
    venice_fake.enqueue(tool_calls_stream([("call_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])]))
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert events == [
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="call_1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"ci')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='ty": "Pa')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='ris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="call_1", name="get_weather", arguments_json='{"city": "Paris"}'
            )
        ),
        Event(usage=BASE_USAGE),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "tool_calls"),
    ]


async def test_parallel_tool_calls(venice_provider, venice_fake):
    venice_fake.enqueue(
        tool_calls_stream(
            [
                ("call_a", "get_weather", ['{"city":', '"Paris"}']),
                ("call_b", "get_time", ["{", '"tz": "CET"', "}"]),
            ]
        )
    )
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert kinds(events) == ["tool_call_delta"] * 7 + ["tool_call", "tool_call", "usage", "finish"]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"tz": "CET"}'),
    ]


async def test_usage_with_cache_and_reasoning_tokens(venice_provider, venice_fake):
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 500,
        "total_tokens": 2500,
        "prompt_tokens_details": {"cached_tokens": 1536, "cache_creation_input_tokens": 128},
        "completion_tokens_details": {"reasoning_tokens": 320},
    }
    venice_fake.enqueue(text_stream(["ok"], usage=usage))
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=2000,
            cached_input_tokens=1536,
            cache_write_tokens=128,
            output_tokens=500,
            reasoning_tokens=320,
            total_tokens=2500,
        )
    ]


async def test_reasoning_content_deltas_and_signature(venice_provider, venice_fake):
    venice_fake.enqueue(
        sse_reply(
            [
                chunk({"role": "assistant", "content": "", "reasoning_content": "Six"}),
                chunk(
                    {
                        "reasoning_content": " times seven.",
                        "reasoning_details": [
                            {"type": "reasoning.text", "text": " times seven.", "index": 0}
                        ],
                    }
                ),
                chunk(
                    {"reasoning_details": [{"type": "reasoning.text", "signature": "sig-xyz", "index": 0}]}
                ),
                chunk({"content": "42", "thought_signature": "CiQB-thought"}),
                chunk({}, finish_reason="stop"),
                chunk(usage=USAGE),
            ]
        )
    )
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    deltas = [e.delta for e in events if e.HasField("delta")]
    assert [(d.reasoning, d.text) for d in deltas[:3]] == [("Six", ""), (" times seven.", ""), ("", "42")]
    assert decode_signature(deltas[3].reasoning_signature) == (
        [{"type": "reasoning.text", "text": " times seven.", "index": 0, "signature": "sig-xyz"}],
        "CiQB-thought",
    )
    assert kinds(events)[-3:] == ["usage", "delta", "finish"]  # the signature comes with the end


async def test_think_block_split_across_chunks(venice_provider, venice_fake):
    pieces = ["<thi", "nk>\nSix times", " seven.\n</th", "ink>\n\n", "4", "2"]
    venice_fake.enqueue(text_stream(pieces))
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    deltas = [e.delta for e in events if e.HasField("delta")]
    assert "".join(d.reasoning for d in deltas) == "Six times seven."
    assert "".join(d.text for d in deltas) == "42"
    assert kinds(events)[-1] == "finish"


async def test_think_tags_are_text_when_thinking_is_disabled(venice_provider, venice_fake):
    venice_fake.enqueue(text_stream(["<think>x</think>", "42"]))
    request = chat_request(
        provider_options=chat_pb2.ProviderOptions(venice=chat_pb2.VeniceParameters(disable_thinking=True))
    )
    events = await collect(venice_provider.stream_chat(request, call_ctx(MODEL)))
    assert [e.delta.text for e in events if e.HasField("delta")] == ["<think>x</think>", "42"]


async def test_search_results_chunk_becomes_citation_events(venice_provider, venice_fake):
    citations = [
        {
            "title": "Rayleigh scattering",
            "url": "https://en.wikipedia.org/wiki/Rayleigh_scattering",
            "content": "...",
        },
        {"title": "Why is the sky blue?", "url": "https://theconversation.com/why-is-the-sky-blue-246393"},
    ]
    search = chunk(extra={"venice_parameters": {"web_search_citations": citations}})
    venice_fake.enqueue(
        sse_reply(
            [
                search,  # the spec says "first chunk"; Venice's guides say "before [DONE]": both work
                chunk({"role": "assistant", "content": "Blue^1^."}),
                chunk({}, finish_reason="stop"),
                chunk(usage=USAGE),
                search,
            ]
        )
    )
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert kinds(events) == ["citation", "citation", "delta", "usage", "finish"]
    assert [(e.citation.url, e.citation.source_id, e.citation.start_index) for e in events[:2]] == [
        (citations[0]["url"], "1", -1),
        (citations[1]["url"], "2", -1),
    ]


async def test_exactly_one_finish_and_it_is_last(venice_provider, venice_fake):
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert kinds(events).count("finish") == 1
    assert events[-1].HasField("finish")


async def test_events_arrive_as_upstream_sends_them(venice_provider, venice_fake):
    venice_fake.enqueue(text_stream(["a", "b", "c"], delay=0.15))
    stream = venice_provider.stream_chat(chat_request(), call_ctx(MODEL))
    started = time.monotonic()
    first = await anext(stream)
    assert first.delta.text == "a"
    assert time.monotonic() - started < 0.6  # not after the whole answer (> 0.75 s)
    await collect(stream)


# ---- errors ------------------------------------------------------------------------------------


async def test_http_429_before_the_stream_gives_retry_after(venice_provider, venice_fake):
    venice_fake.enqueue(rate_limited_reply(reset_in=20))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert (caught.value.code, caught.value.reason) == (Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED)
    assert caught.value.retry_after is not None
    assert 18.0 <= caught.value.retry_after <= 20.0


async def test_error_event_mid_stream(venice_provider, venice_fake):
    error = {
        "error": {"message": "Inference processing failed", "type": "api_error", "code": "upstream_error"}
    }
    venice_fake.enqueue(sse_reply([chunk({"role": "assistant", "content": "Hel"}), error]))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in venice_provider.stream_chat(chat_request(), call_ctx(MODEL)):
            received.append(event)
    assert [e.delta.text for e in received] == ["Hel"]
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
    assert caught.value.retryable
    assert caught.value.metadata["upstream_code"] == "upstream_error"
    assert "upstream_status" not in caught.value.metadata


async def test_overloaded_event_mid_stream_keeps_its_retry_after(venice_provider, venice_fake):
    error = {
        "error": {
            "message": "The model is currently overloaded. Please try again later.",
            "type": "server_error",
            "code": "model_overloaded",
            "param": None,
            "retry_after": 30,
        }
    }
    venice_fake.enqueue(sse_reply([chunk({"content": "a"}), error]))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
    assert caught.value.retry_after == 30.0


async def test_provider_content_block_mid_stream_is_a_content_filter_finish(venice_provider, venice_fake):
    error = {
        "error": {
            "message": "The provider blocked this content.",
            "type": "content_filter_error",
            "code": "content_blocked_by_provider",
            "param": None,
        }
    }
    venice_fake.enqueue(sse_reply([chunk({"content": "Once upon"}), error]))
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert kinds(events) == ["delta", "finish"]
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_CONTENT_FILTER
    assert events[-1].finish.raw_reason == "content_blocked_by_provider"


@pytest.mark.parametrize("end", ["close", "abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_done(venice_provider, venice_fake, end):
    venice_fake.enqueue(text_stream(done=False, end=end))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in venice_provider.stream_chat(chat_request(), call_ctx(MODEL)):
            received.append(event)
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_STREAM_INTERRUPTED)
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_connection_lost_mid_event(venice_provider, venice_fake):
    venice_fake.enqueue(
        sse_reply([chunk({"content": "a"}), b'data: {"id":"chatcmpl-x","obj'], done=False, validate=False)
    )
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_empty_body_is_interrupted(venice_provider, venice_fake):
    venice_fake.enqueue(sse_reply([], done=False))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_malformed_json_event(venice_provider, venice_fake):
    venice_fake.enqueue(sse_reply([chunk({"content": "Hi"}), b"data: {not json\n\n"], validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(venice_provider, venice_fake):
    venice_fake.enqueue(Reply(body=b'{"id":"x"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(venice_provider, venice_fake):
    venice_fake.enqueue(error_reply(404, "Specified model not found"))
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert (caught.value.code, caught.value.reason) == (Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND)
    assert caught.value.metadata["upstream_status"] == "404"


async def test_keepalive_comments_are_ignored(venice_provider, venice_fake):
    venice_fake.enqueue(
        sse_reply(
            [b": ping\n\n", chunk({"content": "a"}), b": ping\r\n\r\n", chunk({}, finish_reason="stop")]
        )
    )
    events = await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert kinds(events) == ["delta", "finish"]


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(venice_provider, venice_fake):
    venice_fake.enqueue(slow_stream())
    stream = venice_provider.stream_chat(chat_request(), call_ctx(MODEL))
    assert (await anext(stream)).delta.text == "tok0 "
    assert (await anext(stream)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await stream.aclose()
    disconnect = await venice_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(venice_provider, venice_fake):
    venice_fake.enqueue(slow_stream())
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in venice_provider.stream_chat(chat_request(), call_ctx(MODEL)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await venice_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(venice_provider, venice_fake):
    venice_fake.enqueue(slow_stream())
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(
            venice_provider.stream_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() + 0.3))
        )
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)
    await venice_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(venice_provider, venice_fake):
    venice_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(
            venice_provider.stream_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() + 0.3))
        )
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_first_token_timeout(venice_provider, venice_fake):
    venice_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL, first_token_timeout=0.2)))
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_connection_is_reused_after_done(venice_provider, venice_fake):
    for _ in range(3):
        await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert len(venice_fake.requests) == 4
    assert len({r.client_port for r in venice_fake.requests}) == 1


async def test_generator_closed_before_start_sends_nothing(venice_provider, venice_fake):
    stream = venice_provider.stream_chat(chat_request(), call_ctx(MODEL))
    with contextlib.suppress(StopAsyncIteration):
        await stream.aclose()
    assert venice_fake.requests == []
