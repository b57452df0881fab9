"""ConverseStream: binary event stream -> homa events, errors inside the stream, truncation,
cancellation and deadlines (through the fake, which sends AWS's exact bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.bedrock import BedrockProvider
from tests.providers.bedrock_spec import encode_frame, event_frame
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.bedrock_upstream import (
    MODEL,
    MODEL_BEHAVIOURS,
    FakeBedrock,
    Reply,
    bedrock_settings,
    checked_fake,
    error_reply,
    example_stream,
    running_fake,
    stream_exception,
    stream_reply,
    text_stream,
    throttling_reply,
    tool_stream,
)

Event = chat_pb2.StreamCompleteResponse
REQUEST_ID = "00000001-0000-4000-8000-000000000001"  # the fake's first x-amzn-RequestId


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str) -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=REQUEST_ID))  # type: ignore[arg-type]


async def stream(provider: BedrockProvider, **ctx: Any) -> list[Event]:
    return await collect(provider.stream_chat(chat_request(), call_ctx(MODEL, **ctx)))


async def test_streamed_text(provider, fake):
    assert await stream(provider) == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        Event(usage=usage_pb2.Usage(input_tokens=25, output_tokens=12, total_tokens=37)),
        finish(usage_pb2.FINISH_REASON_STOP, "end_turn"),
    ]
    assert fake.last.action == "converse-stream"
    assert fake.last.body == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


async def test_example_tool_use_stream_is_reassembled(provider, fake):
    # The exact bytes of provider-specs/bedrock/examples/converse-stream-tool-use.eventstream.
    fake.enqueue(example_stream("converse-stream-tool-use.eventstream"))
    assert await stream(provider) == [
        Event(delta=chat_pb2.ContentDelta(text="Let me check.")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="tooluse_fx1", name="get_weather")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='{"city":')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json='"Paris"}')),
        Event(
            tool_call=content_pb2.ToolCall(
                id="tooluse_fx1", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        Event(usage=usage_pb2.Usage(input_tokens=412, output_tokens=61, total_tokens=473)),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "tool_use"),
    ]


async def test_parallel_tool_calls(provider, fake):
    fake.enqueue(
        tool_stream(
            [
                ("tooluse_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                ("tooluse_b", "get_time", ["", "{}"]),
            ],
            text="Checking both.",
        )
    )
    events = await stream(provider)
    assert kinds(events) == [
        "delta",
        *["tool_call_delta"] * 4,
        "tool_call",
        "tool_call_delta",
        "tool_call_delta",
        "tool_call",
        "usage",
        "finish",
    ]
    assert [e.tool_call for e in events if e.HasField("tool_call")] == [
        content_pb2.ToolCall(id="tooluse_a", name="get_weather", arguments_json='{"city": "Paris"}'),
        content_pb2.ToolCall(id="tooluse_b", name="get_time", arguments_json="{}"),
    ]
    assert [e.tool_call_delta.index for e in events if e.HasField("tool_call_delta")] == [0, 0, 0, 0, 1, 1]


async def test_a_tool_call_without_input_gets_empty_arguments(provider, fake):
    fake.enqueue(tool_stream([("tooluse_n", "now", [])]))
    events = await stream(provider)
    assert [e.tool_call.arguments_json for e in events if e.HasField("tool_call")] == ["{}"]


async def test_reasoning_and_signature_stream(provider, fake):
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"role": "assistant"}),
                (
                    "contentBlockDelta",
                    {"delta": {"reasoningContent": {"text": "Add "}}, "contentBlockIndex": 0},
                ),
                (
                    "contentBlockDelta",
                    {"delta": {"reasoningContent": {"text": "them."}}, "contentBlockIndex": 0},
                ),
                (
                    "contentBlockDelta",
                    {"delta": {"reasoningContent": {"signature": "EqQBsig=="}}, "contentBlockIndex": 0},
                ),
                ("contentBlockStop", {"contentBlockIndex": 0}),
                (
                    "contentBlockDelta",
                    {
                        "delta": {"reasoningContent": {"redactedContent": "AP9vcGFxdWU="}},
                        "contentBlockIndex": 1,
                    },
                ),
                ("contentBlockStop", {"contentBlockIndex": 1}),
                ("contentBlockDelta", {"delta": {"text": "4"}, "contentBlockIndex": 2}),
                ("contentBlockStop", {"contentBlockIndex": 2}),
                ("messageStop", {"stopReason": "end_turn"}),
                (
                    "metadata",
                    {
                        "usage": {"inputTokens": 10, "outputTokens": 30, "totalTokens": 40},
                        "metrics": {"latencyMs": 5},
                    },
                ),
            ]
        )
    )
    deltas = [e.delta for e in await stream(provider) if e.HasField("delta")]
    assert deltas == [
        chat_pb2.ContentDelta(reasoning="Add "),
        chat_pb2.ContentDelta(reasoning="them."),
        chat_pb2.ContentDelta(reasoning_signature=b"EqQBsig=="),
        chat_pb2.ContentDelta(
            reasoning_signature=b"\x00\xffopaque", reasoning_redacted=True, reasoning_index=1
        ),
        chat_pb2.ContentDelta(text="4"),
    ]


async def test_citations_stream(provider, fake):
    citation = {
        "title": "Q3 report",
        "sourceContent": [{"text": "revenue increased by 12%"}],
        "location": {"documentPage": {"documentIndex": 1, "start": 2, "end": 3}},
    }
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "Intro. "}, "contentBlockIndex": 0}),
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("contentBlockDelta", {"delta": {"text": "It rose 12%."}, "contentBlockIndex": 1}),
                ("contentBlockDelta", {"delta": {"citation": citation}, "contentBlockIndex": 1}),
                ("contentBlockStop", {"contentBlockIndex": 1}),
                ("messageStop", {"stopReason": "end_turn"}),
                (
                    "metadata",
                    {
                        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                        "metrics": {"latencyMs": 5},
                    },
                ),
            ]
        )
    )
    events = await stream(provider)
    assert [e.citation for e in events if e.HasField("citation")] == [
        content_pb2.Citation(
            title="Q3 report",
            cited_text="revenue increased by 12%",
            start_index=7,
            end_index=19,
            source_id="document:1",
        )
    ]


async def test_usage_with_prompt_cache(provider, fake):
    usage = {
        "inputTokens": 3,
        "outputTokens": 20,
        "totalTokens": 1227,
        "cacheReadInputTokens": 1024,
        "cacheWriteInputTokens": 200,
    }
    fake.enqueue(text_stream(["ok"], usage=usage))
    assert [e.usage for e in await stream(provider) if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=1227,
            cached_input_tokens=1024,
            cache_write_tokens=200,
            output_tokens=20,
            total_tokens=1247,
        )
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("max_tokens", usage_pb2.FINISH_REASON_LENGTH),
        ("stop_sequence", usage_pb2.FINISH_REASON_STOP),
        ("guardrail_intervened", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("content_filtered", usage_pb2.FINISH_REASON_CONTENT_FILTER),
    ],
)
async def test_stream_finish_reasons(provider, fake, raw, reason):
    fake.enqueue(text_stream(["x"], stop_reason=raw))
    assert (await stream(provider))[-1] == finish(reason, raw)


async def test_metadata_before_message_stop_still_finishes_once(provider, fake):
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "a"}, "contentBlockIndex": 0}),
                (
                    "metadata",
                    {
                        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                        "metrics": {"latencyMs": 1},
                    },
                ),
                ("messageStop", {"stopReason": "end_turn"}),
            ]
        )
    )
    events = await stream(provider)
    assert kinds(events) == ["delta", "usage", "finish"]


async def test_aws_padding_and_unknown_events_are_ignored(provider, fake):
    # AWS adds a "p" member to event payloads to pad their length; new event types may appear.
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"p": "abcdefghijkl", "role": "assistant"}),
                (
                    "contentBlockDelta",
                    {
                        "p": "abcdefghijklmnopqrstuvwxyzABCDEF",
                        "delta": {"text": "hi"},
                        "contentBlockIndex": 0,
                    },
                ),
                event_frame("someFutureEvent", b'{"x":1}'),
                ("messageStop", {"p": "abc", "stopReason": "end_turn"}),
                (
                    "metadata",
                    {
                        "p": "ab",
                        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                        "metrics": {"latencyMs": 1},
                    },
                ),
            ],
            validate=False,  # the unknown event is deliberately outside the service model
        )
    )
    assert kinds(await stream(provider)) == ["delta", "usage", "finish"]


async def test_events_arrive_as_upstream_sends_them(provider, fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    events = provider.stream_chat(chat_request(), call_ctx(MODEL))
    started = time.monotonic()
    assert (await anext(events)).delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await events.aclose()
    await fake.wait_for_disconnect()


async def test_connection_is_reused_after_a_complete_stream(provider, fake):
    for _ in range(3):
        await stream(provider)
    assert len({r.client_port for r in fake.requests}) == 1


# ---- errors ----------------------------------------------------------------------------------------


async def test_http_429_before_the_stream(provider, fake):
    fake.enqueue(throttling_reply())
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        True,
    )
    assert error.retry_after == 1.0
    assert error.metadata["upstream_status"] == "429"
    assert error.metadata["upstream_type"] == "ThrottlingException"


async def test_example_throttling_exception_mid_stream(provider, fake):
    # provider-specs/bedrock/examples/converse-stream-throttling.eventstream: messageStart, then an
    # exception frame, all inside an HTTP 200.
    fake.enqueue(example_stream("converse-stream-throttling.eventstream"))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        True,
    )
    assert error.retry_after == 1.0
    assert error.metadata["upstream_type"] == "throttlingException"
    assert error.metadata["upstream_request_id"] == REQUEST_ID
    assert "upstream_status" not in error.metadata
    assert "Too many tokens" in error.message


@pytest.mark.parametrize(
    ("exception", "code", "reason"),
    [
        ("modelStreamErrorException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("internalServerException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("serviceUnavailableException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("validationException", Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST),
    ],
)
async def test_exception_frames_after_content(provider, fake, exception, code, reason):
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "Hel"}, "contentBlockIndex": 0}),
                stream_exception(exception, "The model stream failed."),
            ]
        )
    )
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in provider.stream_chat(chat_request(), call_ctx(MODEL)):
            received.append(event)
    assert [e.delta.text for e in received] == ["Hel"]
    assert (caught.value.code, caught.value.reason) == (code, reason)


async def test_error_message_frame(provider, fake):
    frame_headers = {":error-code": "InternalFailure", ":error-message": "boom", ":message-type": "error"}
    fake.enqueue(
        stream_reply(
            [("messageStart", {"role": "assistant"}), encode_frame(frame_headers, b"")], validate=False
        )
    )
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.metadata["upstream_type"] == "InternalFailure"


@pytest.mark.parametrize("behaviour", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_message_stop_and_metadata(provider, fake, behaviour):
    fake.enqueue(MODEL_BEHAVIOURS[behaviour]("converse-stream"))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in provider.stream_chat(chat_request(), call_ctx(MODEL)):
            received.append(event)
    assert (caught.value.code, caught.value.reason, caught.value.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_STREAM_INTERRUPTED,
        True,
    )
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_message_stop_without_metadata_is_interrupted(provider, fake):
    fake.enqueue(
        stream_reply(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "a"}, "contentBlockIndex": 0}),
                ("messageStop", {"stopReason": "end_turn"}),
            ]
        )
    )
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_connection_lost_mid_message(provider, fake):
    frame = event_frame("contentBlockDelta", orjson.dumps({"delta": {"text": "b"}, "contentBlockIndex": 0}))
    fake.enqueue(stream_reply([("messageStart", {"role": "assistant"}), frame[:20]], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event-stream message" in caught.value.message


async def test_empty_body_is_interrupted(provider, fake):
    fake.enqueue(stream_reply([]))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_corrupt_checksum_is_a_protocol_error(provider, fake):
    frame = bytearray(event_frame("messageStart", b'{"role":"assistant"}'))
    frame[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
    fake.enqueue(stream_reply([bytes(frame)], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert "ChecksumMismatch" in caught.value.message


@pytest.mark.parametrize(
    "frame",
    [
        event_frame("contentBlockDelta", b"{not json"),
        event_frame("contentBlockDelta", b'{"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 3}'),
        event_frame("messageStop", b'{"stopReason": 5}'),
        event_frame("metadata", b'{"metrics": {}}'),
    ],
    ids=["bad-json", "tool-input-without-start", "wrong-type", "missing-usage"],
)
async def test_malformed_events_are_protocol_errors(provider, fake, frame):
    fake.enqueue(stream_reply([("messageStart", {"role": "assistant"}), frame], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(provider, fake):
    fake.enqueue(Reply(body=b"{}", validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(provider, fake):
    fake.enqueue(error_reply(400, "ValidationException", "Input is too long for requested model."))
    with pytest.raises(GatewayError) as caught:
        await stream(provider)
    assert (caught.value.code, caught.value.reason) == (Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED)


# ---- cancellation and deadlines ---------------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(provider, fake):
    fake.enqueue(MODEL_BEHAVIOURS["fake-slow"]("converse-stream"))
    events = provider.stream_chat(chat_request(), call_ctx(MODEL))
    assert (await anext(events)).delta.text == "tok0 "
    assert (await anext(events)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await events.aclose()
    disconnect = await fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(provider, fake):
    fake.enqueue(MODEL_BEHAVIOURS["fake-slow"]("converse-stream"))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream_chat(chat_request(), call_ctx(MODEL)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(provider, fake):
    fake.enqueue(MODEL_BEHAVIOURS["fake-slow"]("converse-stream"))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(provider, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)
    await fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(provider, fake):
    fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(provider, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_unary_deadline(provider, fake):
    slow = text_stream(["x"])
    fake.enqueue(Reply(body=b"{}", delay=2.0, validate=False))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)
    del slow


async def test_spent_deadline_sends_nothing(provider, fake):
    with pytest.raises(GatewayError) as caught:
        await stream(provider, deadline=time.monotonic() - 1)
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert fake.requests == []


async def test_first_token_timeout(provider, fake):
    fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(provider, first_token_timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_first_token_timeout_does_not_limit_the_rest(provider, fake):
    fake.enqueue(text_stream(["a", "b", "c", "d", "e"], delay=0.1))
    assert kinds(await stream(provider, first_token_timeout=0.5))[-1] == "finish"


async def test_generator_closed_before_start_sends_nothing(provider, fake):
    events = provider.stream_chat(chat_request(), call_ctx(MODEL))
    with contextlib.suppress(StopAsyncIteration):
        await events.aclose()
    assert fake.requests == []
