"""Streaming: Azure SSE chunks -> homa events (prompt-filter chunks, tool calls, usage, citations),
errors mid-stream, truncation, cancellation and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.azure_openai import AzureOpenAIProvider
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import (
    Reply,
    azure_settings,
    chunk,
    error_reply,
    prompt_filter_chunk,
    rate_limited_reply,
    sse_reply,
    text_stream,
    tool_calls_stream,
    usage_chunk,
)

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake
azure_provider = fake.azure_provider

Event = chat_pb2.StreamCompleteResponse


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str, completion_id: str = "chatcmpl-AzFx1") -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=completion_id))  # type: ignore[arg-type]


async def stream(provider, deployment: str = "gpt-4o", **ctx_fields):
    return await collect(provider.stream_chat(chat_request(), call_ctx(deployment, **ctx_fields)))


@pytest.fixture
async def preview_provider(azure_fake):
    provider = AzureOpenAIProvider(
        "azure", azure_settings(azure_fake.base_url, api_version="2025-04-01-preview")
    )
    yield provider
    await provider.aclose()


async def test_streamed_text_skips_the_prompt_filter_chunk(azure_provider, azure_fake):
    events = await stream(azure_provider)
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        finish(usage_pb2.FINISH_REASON_STOP, "stop"),  # the id comes from the first real chunk
    ]
    assert azure_fake.last.body["stream"] is True
    assert "stream_options" not in azure_fake.last.body  # GA 2024-10-21 has no stream_options


async def test_streamed_usage_on_preview_with_cache_and_reasoning(preview_provider, azure_fake):
    usage = {
        "completion_tokens": 300,
        "completion_tokens_details": {"reasoning_tokens": 256},
        "prompt_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "total_tokens": 1500,
    }
    azure_fake.enqueue(text_stream(["ok"], usage=usage))
    events = await stream(preview_provider, "o3-mini")
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=1200,
            cached_input_tokens=1024,
            output_tokens=300,
            reasoning_tokens=256,
            total_tokens=1500,
        )
    ]
    assert kinds(events)[-2:] == ["usage", "finish"]
    assert azure_fake.last.body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_is_reassembled(azure_provider, azure_fake):
    azure_fake.enqueue(tool_calls_stream([("call_fx1", "get_weather", ['{"ci', 'ty":', '"Paris"}'])]))
    events = await stream(azure_provider)
    assert events == [
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="call_fx1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"ci')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='ty":')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='"Paris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="call_fx1", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "tool_calls"),
    ]


async def test_parallel_tool_calls(azure_provider, azure_fake):
    events = await stream(azure_provider, "fake-parallel-tools")
    assert kinds(events) == ["tool_call_delta"] * 5 + ["tool_call", "tool_call", "finish"]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"tz":"CET"}'),
    ]
    assert {e.tool_call_delta.index for e in events if e.HasField("tool_call_delta")} == {0, 1}


async def test_filtered_answer_ends_with_content_filter(azure_provider, azure_fake):
    azure_fake.enqueue(text_stream(["Here is how"], finish_reason="content_filter"))
    events = await stream(azure_provider)
    assert events[-1] == finish(usage_pb2.FINISH_REASON_CONTENT_FILTER, "content_filter")
    assert kinds(events).count("finish") == 1


async def test_asynchronous_filter_annotations_are_skipped(azure_provider, azure_fake):
    # With Azure's asynchronous filter, annotation chunks (no delta, empty object) follow the text.
    annotation = {
        "choices": [
            {
                "content_filter_offsets": {"check_offset": 0, "end_offset": 11, "start_offset": 0},
                "content_filter_results": fake.CHOICE_FILTER,
                "finish_reason": None,
                "index": 0,
            }
        ],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
    }
    azure_fake.enqueue(
        sse_reply(
            [
                prompt_filter_chunk(),
                chunk({"content": "Hello there"}),
                chunk({}, finish_reason="stop", filtered=False),
                annotation,
            ]
        )
    )
    events = await stream(azure_provider)
    assert kinds(events) == ["delta", "finish"]


async def test_on_your_data_citations_stream_as_citation_events(azure_provider, azure_fake):
    context = {
        "citations": [{"content": "25 days.", "title": "Handbook", "filepath": "h.pdf"}],
        "intent": "x",
    }
    azure_fake.enqueue(
        sse_reply(
            [
                prompt_filter_chunk(),
                chunk({"content": None, "context": context, "role": "assistant"}, filtered=False),
                chunk({"content": "25 days [doc1]."}),
                chunk({}, finish_reason="stop", filtered=False),
            ]
        )
    )
    events = await stream(azure_provider)
    assert kinds(events) == ["citation", "delta", "finish"]
    assert events[0].citation == content_pb2.Citation(
        title="Handbook", cited_text="25 days.", start_index=-1, end_index=-1, source_id="doc1"
    )


async def test_exactly_one_finish_and_it_is_last(azure_provider, azure_fake):
    events = await stream(azure_provider, "fake-tools")
    assert kinds(events).count("finish") == 1
    assert kinds(events)[-1] == "finish"


async def test_events_arrive_as_upstream_sends_them(azure_provider, azure_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    azure_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    events = azure_provider.stream_chat(chat_request(), call_ctx("gpt-4o"))
    started = time.monotonic()
    first = await anext(events)
    assert first.delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await events.aclose()
    await azure_fake.wait_for_disconnect()


async def test_keepalive_comments_are_ignored(azure_provider, azure_fake):
    azure_fake.enqueue(
        sse_reply(
            [b": ping\n\n", chunk({"content": "a"}), b": ping\r\n\r\n", chunk({}, finish_reason="stop")]
        )
    )
    assert kinds(await stream(azure_provider)) == ["delta", "finish"]


async def test_usage_only_chunk_after_finish(preview_provider, azure_fake):
    azure_fake.enqueue(
        sse_reply(
            [prompt_filter_chunk(), chunk({"content": "a"}), chunk({}, finish_reason="stop"), usage_chunk()]
        )
    )
    events = await stream(preview_provider)
    assert kinds(events) == ["delta", "usage", "finish"]


# ---- errors ------------------------------------------------------------------------------------


async def test_http_429_before_the_stream(azure_provider, azure_fake):
    azure_fake.enqueue(rate_limited_reply(seconds=3))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 3.0


async def test_error_event_mid_stream(azure_provider, azure_fake):
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in azure_provider.stream_chat(chat_request(), call_ctx("fake-midstream-error")):
            received.append(event)
    assert [e.delta.text for e in received] == ["Hel"]
    error = caught.value
    assert error.code == Code.UNAVAILABLE
    assert error.reason == Reason.UPSTREAM_UNAVAILABLE
    assert error.metadata["upstream_code"] == "server_error"
    assert "upstream_status" not in error.metadata


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            {"code": "429", "message": "Rate limit. Please retry after 5 seconds."},
            Code.RESOURCE_EXHAUSTED,
            Reason.UPSTREAM_RATE_LIMITED,
        ),
        ({"code": "content_filter", "message": "filtered"}, Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED),
        (
            {"code": "context_length_exceeded", "message": "too long"},
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
        ),
        ({"message": "boom", "type": "server_error"}, Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
    ],
    ids=["rate-limit", "content-filter", "context-length", "server-error"],
)
async def test_error_events_are_classified(azure_provider, azure_fake, error, code, reason):
    azure_fake.enqueue(
        sse_reply([prompt_filter_chunk(), chunk({"content": "a"}), {"error": error}], done=False)
    )
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert (caught.value.code, caught.value.reason) == (code, reason)
    if reason == Reason.UPSTREAM_RATE_LIMITED:
        assert caught.value.retry_after == 5.0


@pytest.mark.parametrize("deployment", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_done(azure_provider, azure_fake, deployment):
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in azure_provider.stream_chat(chat_request(), call_ctx(deployment)):
            received.append(event)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_connection_lost_mid_event(azure_provider, azure_fake):
    azure_fake.enqueue(
        sse_reply(
            [chunk({"content": "a"}), b'data: {"choices":[{"content_filter'], done=False, validate=False
        )
    )
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_only_the_prompt_filter_chunk_then_close(azure_provider, azure_fake):
    azure_fake.enqueue(sse_reply([prompt_filter_chunk()], done=False))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_empty_body_is_interrupted(azure_provider, azure_fake):
    azure_fake.enqueue(sse_reply([], done=False))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_malformed_json_event(azure_provider, azure_fake):
    azure_fake.enqueue(sse_reply([chunk({"content": "Hi"}), b"data: {not json\n\n"], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(azure_provider, azure_fake):
    azure_fake.enqueue(Reply(body=b'{"id":"x"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(azure_provider, azure_fake):
    azure_fake.enqueue(error_reply(400, "invalid_request_error", "Invalid 'messages'.", param="messages"))
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.UPSTREAM_INVALID_REQUEST
    assert caught.value.metadata["upstream_param"] == "messages"
    assert caught.value.metadata["upstream_request_id"]


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(azure_provider, azure_fake):
    events = azure_provider.stream_chat(chat_request(), call_ctx("fake-slow"))
    assert (await anext(events)).delta.text == "tok0 "
    assert (await anext(events)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await events.aclose()
    disconnect = await azure_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(azure_provider, azure_fake):
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in azure_provider.stream_chat(chat_request(), call_ctx("fake-slow")):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await azure_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(azure_provider, azure_fake):
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider, "fake-slow", deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    await azure_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(azure_provider, azure_fake):
    azure_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_unary_deadline(azure_provider, azure_fake):
    slow = fake.json_reply(fake.chat_completion())
    slow.delay = 2.0
    azure_fake.enqueue(slow)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await azure_provider.complete_chat(
            chat_request(), call_ctx("gpt-4o", deadline=time.monotonic() + 0.3)
        )
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)


async def test_spent_deadline_sends_nothing(azure_provider, azure_fake):
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider, deadline=time.monotonic() - 1.0)
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert azure_fake.requests == []


async def test_first_token_timeout(azure_provider, azure_fake):
    azure_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(azure_provider, first_token_timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_connection_is_reused_after_done(azure_provider, azure_fake):
    for _ in range(3):
        await stream(azure_provider)
    await azure_provider.complete_chat(chat_request(), call_ctx("gpt-4o"))
    assert len(azure_fake.requests) == 4
    assert len({r.client_port for r in azure_fake.requests}) == 1


async def test_generator_closed_before_start_sends_nothing(azure_provider, azure_fake):
    events = azure_provider.stream_chat(chat_request(), call_ctx("gpt-4o"))
    with contextlib.suppress(StopAsyncIteration):
        await events.aclose()
    assert azure_fake.requests == []
