"""Streaming: SSE chunks -> homa events, errors mid-stream, truncation, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.routing.converse import TurnAssembler
from tests.providers.conftest import chat_request, collect, message
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    MODEL_BEHAVIOURS,
    USAGE,
    Reply,
    chunk,
    error_reply,
    example_stream,
    function_call_part,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_upstream_fixture,
    quota_reply,
    sse_reply,
    text_stream,
)

Event = chat_pb2.StreamCompleteResponse
PROMPT_USAGE = Event(usage=usage_pb2.Usage(input_tokens=12, total_tokens=12))
FINAL_USAGE = Event(usage=usage_pb2.Usage(input_tokens=12, output_tokens=9, total_tokens=21))


def kinds(events: list[Event]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def finish(reason: int, raw: str, response_id: str = "fx-resp-1") -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=response_id))  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def stream(provider, **ctx):
    return await collect(provider.stream_chat(chat_request(), gemini_ctx(**ctx)))


async def test_streamed_text(gemini_provider, gemini_fake):
    events = await stream(gemini_provider)
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Hello")),
        PROMPT_USAGE,
        Event(delta=chat_pb2.ContentDelta(text=" there!")),
        FINAL_USAGE,
        finish(usage_pb2.FINISH_REASON_STOP, "STOP"),
    ]


async def test_example_stream_bytes_tool_call_is_reassembled(gemini_provider, gemini_fake):
    # The exact bytes of provider-specs/gemini/examples (CRLF framing, thoughtSignature, no id).
    gemini_fake.enqueue(example_stream())
    events = await stream(gemini_provider)
    call = content_pb2.ToolCall(
        id="call_0", name="get_weather", arguments_json='{"city":"Paris"}', signature=base64.b64decode("Cj0=")
    )
    assert events == [
        Event(delta=chat_pb2.ContentDelta(text="Let me check")),
        PROMPT_USAGE,
        Event(
            tool_call_delta=chat_pb2.ToolCallDelta(
                index=0, id="call_0", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        Event(tool_call=call),
        FINAL_USAGE,
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "STOP"),
    ]


async def test_parallel_tool_calls_across_chunks(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        sse_reply(
            [
                chunk(
                    [
                        function_call_part(
                            "get_weather", {"city": "Paris"}, call_id="fc-1", signature=b64(b"s1")
                        )
                    ]
                ),
                chunk(
                    [
                        function_call_part("get_weather", {"city": "Rome"}),
                        function_call_part("get_time", {"tz": "CET"}),
                    ],
                    finish_reason="STOP",
                    usage=USAGE,
                ),
            ]
        )
    )
    events = await stream(gemini_provider)
    assert kinds(events) == [
        *("tool_call_delta", "tool_call", "usage"),  # chunk 1: one call, prompt usage
        *("tool_call_delta", "tool_call", "tool_call_delta", "tool_call", "usage"),  # chunk 2
        "finish",
    ]
    deltas = [e.tool_call_delta for e in events if e.HasField("tool_call_delta")]
    assert [(d.index, d.id, d.name) for d in deltas] == [
        (0, "fc-1", "get_weather"),
        (1, "call_1", "get_weather"),
        (2, "call_2", "get_time"),
    ]
    calls = [e.tool_call for e in events if e.HasField("tool_call")]
    assert calls == [
        content_pb2.ToolCall(
            id="fc-1", name="get_weather", arguments_json='{"city":"Paris"}', signature=b"s1"
        ),
        content_pb2.ToolCall(id="call_1", name="get_weather", arguments_json='{"city":"Rome"}'),
        content_pb2.ToolCall(id="call_2", name="get_time", arguments_json='{"tz":"CET"}'),
    ]
    assert events[-1] == finish(usage_pb2.FINISH_REASON_TOOL_CALLS, "STOP")


async def test_thoughts_signatures_and_reasoning_usage(gemini_provider, gemini_fake):
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-thinking"](None))
    events = await stream(gemini_provider)
    assert events == [
        Event(delta=chat_pb2.ContentDelta(reasoning="Let me think about it.", reasoning_index=0)),
        PROMPT_USAGE,
        Event(delta=chat_pb2.ContentDelta(reasoning_signature=b"sig-text", reasoning_index=1)),
        Event(delta=chat_pb2.ContentDelta(text="42")),
        Event(usage=usage_pb2.Usage(input_tokens=10, output_tokens=21, reasoning_tokens=20, total_tokens=31)),
        finish(usage_pb2.FINISH_REASON_STOP, "STOP"),
    ]


async def test_signed_thought_sends_its_signature_after_the_text(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        sse_reply(
            [
                chunk([{"text": "hmm, ", "thought": True}]),
                chunk([{"text": "yes", "thought": True, "thoughtSignature": b64(b"t")}]),
                chunk([{"text": "ok"}], finish_reason="STOP"),
            ]
        )
    )
    events = await stream(gemini_provider)
    assert [e.delta for e in events if e.HasField("delta")] == [
        chat_pb2.ContentDelta(reasoning="hmm, ", reasoning_index=0),
        chat_pb2.ContentDelta(reasoning="yes", reasoning_index=0),
        chat_pb2.ContentDelta(reasoning_signature=b"t", reasoning_index=0),
        chat_pb2.ContentDelta(text="ok"),
    ]


async def test_reasoning_blocks_are_numbered(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        sse_reply(
            [
                chunk([{"text": "first", "thought": True}]),
                chunk([function_call_part("f", {}, signature=b64(b"call"))]),
                chunk([{"text": "second", "thought": True, "thoughtSignature": b64(b"s2")}]),
                chunk([{"text": "answer", "thoughtSignature": b64(b"s3")}], finish_reason="STOP"),
            ]
        )
    )
    events = await stream(gemini_provider)
    reasoning = [
        (e.delta.reasoning, e.delta.reasoning_signature, e.delta.reasoning_index)
        for e in events
        if e.HasField("delta") and not e.delta.text
    ]
    assert reasoning == [("first", b"", 0), ("second", b"", 1), ("", b"s2", 1), ("", b"s3", 2)]
    assert [e.tool_call.signature for e in events if e.HasField("tool_call")] == [b"call"]


@pytest.mark.parametrize(
    "parts",
    [
        [{"text": "Let me think.", "thought": True}, {"text": "42", "thoughtSignature": b64(b"sig-text")}],
        [
            {"text": "Plan: call f.", "thought": True, "thoughtSignature": b64(b"sig-thought")},
            function_call_part("f", {"x": 1}, signature=b64(b"sig-call")),
        ],
        [{"text": "Hidden thinking.", "thoughtSignature": b64(b"only")}],
    ],
    ids=["signed-text", "signed-thought-and-call", "signed-text-only"],
)
async def test_streamed_turn_assembled_and_sent_back_reproduces_geminis_parts(
    gemini_provider, gemini_fake, parts
):
    """Stream -> the gateway's TurnAssembler -> next request: Gemini gets its own parts back."""
    gemini_fake.enqueue(
        sse_reply([chunk([part]) for part in parts[:-1]] + [chunk(parts[-1:], finish_reason="STOP")])
    )
    assembler = TurnAssembler()
    for event in await stream(gemini_provider):
        assembler.add(event)
    follow = chat_request(
        message(content_pb2.ROLE_USER, "Hi"),
        assembler.message(),
        message(content_pb2.ROLE_USER, "Thanks"),
        tools=[content_pb2.Tool(name="f")],
    )
    await gemini_provider.complete_chat(follow, gemini_ctx())
    sent = gemini_fake.last.body["contents"][1]["parts"]
    expected = [dict(part) for part in parts]
    for part in expected:
        if "functionCall" in part:
            part["functionCall"] = {**part["functionCall"], "id": "call_0"}
    assert sent == expected


async def test_usage_with_cache_and_tool_use_prompt(gemini_provider, gemini_fake):
    usage = {
        "promptTokenCount": 2000,
        "cachedContentTokenCount": 1500,
        "toolUsePromptTokenCount": 10,
        "candidatesTokenCount": 40,
        "thoughtsTokenCount": 60,
        "totalTokenCount": 2110,
    }
    gemini_fake.enqueue(text_stream(["ok"], usage=usage))
    events = await stream(gemini_provider)
    assert [e.usage for e in events if e.HasField("usage")] == [
        usage_pb2.Usage(
            input_tokens=2010,
            cached_input_tokens=1500,
            output_tokens=100,
            reasoning_tokens=60,
            total_tokens=2110,
        )
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("MAX_TOKENS", usage_pb2.FINISH_REASON_LENGTH),
        ("SAFETY", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("RECITATION", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", usage_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_stream_finish_reasons(gemini_provider, gemini_fake, raw, reason):
    gemini_fake.enqueue(text_stream(["x"], finish_reason=raw))
    events = await stream(gemini_provider)
    assert events[-1] == finish(reason, raw)
    assert kinds(events).count("finish") == 1


async def test_citations_stream_once(gemini_provider, gemini_fake):
    sources = {"citationSources": [{"startIndex": 6, "endIndex": 11, "uri": "https://example.com/x"}]}
    gemini_fake.enqueue(
        sse_reply(
            [
                chunk([{"text": "Héllo "}]),
                chunk([{"text": "world"}], citationMetadata=sources),
                chunk([{"text": "."}], finish_reason="STOP", citationMetadata=sources, usage=USAGE),
            ]
        )
    )
    events = await stream(gemini_provider)
    citations = [e.citation for e in events if e.HasField("citation")]
    assert citations == [content_pb2.Citation(url="https://example.com/x", start_index=5, end_index=10)]
    assert kinds(events)[-1] == "finish"


async def test_blocked_prompt_in_a_stream(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        sse_reply(
            [
                {
                    "promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
                }
            ]
        )
    )
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.CONTENT_FILTERED


async def test_events_arrive_as_upstream_sends_them(gemini_provider, gemini_fake):
    """No buffering: the first delta is yielded while the upstream is still sending."""
    gemini_fake.enqueue(text_stream([f"t{i}" for i in range(20)], delay=0.05))
    events = gemini_provider.stream_chat(chat_request(), gemini_ctx())
    started = time.monotonic()
    first = await anext(events)
    assert first.delta.text == "t0"
    assert time.monotonic() - started < 0.5  # the whole stream takes more than a second
    await events.aclose()
    await gemini_fake.wait_for_disconnect()


async def test_keepalive_comments_and_lf_framing_are_accepted(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        sse_reply(
            [
                b": keep-alive\r\n\r\n",
                b'data: {"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"},'
                b'"finishReason":"STOP","index":0}]}\n\n',
            ],
            validate=False,
        )
    )
    events = await stream(gemini_provider)
    assert kinds(events) == ["delta", "finish"]


# ---- errors ------------------------------------------------------------------------------------


async def test_http_429_before_the_stream_gives_retry_after(gemini_provider, gemini_fake):
    gemini_fake.enqueue(quota_reply("27.5s"))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 27.5
    assert caught.value.retryable


async def test_error_event_mid_stream(gemini_provider, gemini_fake):
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-midstream-error"](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in gemini_provider.stream_chat(chat_request(), gemini_ctx()):
            received.append(event)
    assert [e.delta.text for e in received if e.HasField("delta")] == ["Hel"]
    error = caught.value
    assert error.code == Code.UNAVAILABLE
    assert error.reason == Reason.UPSTREAM_UNAVAILABLE
    assert error.metadata["upstream_code"] == "UNAVAILABLE"
    assert "upstream_status" not in error.metadata


async def test_rate_limit_error_event_mid_stream(gemini_provider, gemini_fake):
    error = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}],
        }
    }
    gemini_fake.enqueue(sse_reply([chunk([{"text": "a"}]), error]))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("behaviour", ["fake-drop", "fake-abort"], ids=["clean-close", "tcp-drop"])
async def test_connection_lost_before_finish_reason(gemini_provider, gemini_fake, behaviour):
    gemini_fake.enqueue(MODEL_BEHAVIOURS[behaviour](None))
    received = []
    with pytest.raises(GatewayError) as caught:
        async for event in gemini_provider.stream_chat(chat_request(), gemini_ctx()):
            received.append(event)
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert caught.value.retryable
    assert "finish" not in kinds(received)
    assert "delta" in kinds(received)


async def test_tcp_drop_after_finish_reason_still_finishes(gemini_provider, gemini_fake):
    gemini_fake.enqueue(text_stream(end="abort"))
    events = await stream(gemini_provider)
    assert events[-1] == finish(usage_pb2.FINISH_REASON_STOP, "STOP")


async def test_a_lingering_connection_does_not_hold_back_the_finish(gemini_provider, gemini_fake):
    gemini_fake.enqueue(text_stream(["done"], hold=5.0))
    started = time.monotonic()
    events = await stream(gemini_provider)
    assert time.monotonic() - started < 1.5
    assert events[-1] == finish(usage_pb2.FINISH_REASON_STOP, "STOP")
    await gemini_fake.wait_for_disconnect(within=1.0)  # the response was closed, not left open


async def test_a_chunk_after_the_finish_reason_is_still_read(gemini_provider, gemini_fake):
    late_usage = {"promptTokenCount": 12, "candidatesTokenCount": 10, "totalTokenCount": 22}
    gemini_fake.enqueue(
        sse_reply([chunk([{"text": "a"}], finish_reason="STOP", usage=USAGE), chunk(usage=late_usage)])
    )
    events = await stream(gemini_provider)
    assert [e.usage.total_tokens for e in events if e.HasField("usage")] == [21, 22]
    assert kinds(events)[-1] == "finish"


async def test_connection_lost_mid_event(gemini_provider, gemini_fake):
    gemini_fake.enqueue(sse_reply([chunk([{"text": "a"}]), b'data: {"candidates":[{"cont'], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED
    assert "middle of an event" in caught.value.message


async def test_empty_body_is_interrupted(gemini_provider, gemini_fake):
    gemini_fake.enqueue(sse_reply([]))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.reason == Reason.UPSTREAM_STREAM_INTERRUPTED


async def test_malformed_json_event(gemini_provider, gemini_fake):
    gemini_fake.enqueue(sse_reply([chunk([{"text": "Hi"}]), b"data: {not json\r\n\r\n"], validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_json_answer_to_a_stream_request_is_a_protocol_error(gemini_provider, gemini_fake):
    gemini_fake.enqueue(Reply(body=b'[{"candidates": []}]', validate=False))
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_http_error_on_stream_request(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        error_reply(400, "* GenerateContentRequest.contents: contents is not specified", "INVALID_ARGUMENT")
    )
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.UPSTREAM_INVALID_REQUEST
    assert caught.value.metadata["upstream_status"] == "400"


# ---- cancellation and deadlines ------------------------------------------------------------


async def test_closing_the_generator_closes_the_upstream_connection(gemini_provider, gemini_fake):
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    events = gemini_provider.stream_chat(chat_request(), gemini_ctx())
    assert (await anext(events)).delta.text == "tok0 "
    await anext(events)  # usage
    assert (await anext(events)).delta.text == "tok1 "
    closed_at = time.monotonic()
    await events.aclose()
    disconnect = await gemini_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - closed_at < 1.0
    assert disconnect.frames_sent < 10


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(gemini_provider, gemini_fake):
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in gemini_provider.stream_chat(chat_request(), gemini_ctx()):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnect = await gemini_fake.wait_for_disconnect(within=1.0)
    assert disconnect.time - cancelled_at < 1.0


async def test_deadline_passing_mid_stream_is_upstream_timeout(gemini_provider, gemini_fake):
    gemini_fake.enqueue(MODEL_BEHAVIOURS["fake-slow"](None))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    await gemini_fake.wait_for_disconnect(within=1.0)


async def test_stalled_stream_times_out_at_the_deadline(gemini_provider, gemini_fake):
    gemini_fake.enqueue(text_stream(["never"], delay=5.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


async def test_first_token_timeout(gemini_provider, gemini_fake):
    gemini_fake.enqueue(text_stream(["late"], delay=2.0))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider, first_token_timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert "first" in caught.value.message


async def test_first_token_timeout_does_not_limit_the_rest(gemini_provider, gemini_fake):
    gemini_fake.enqueue(text_stream(["a", "b", "c", "d", "e"], delay=0.1))
    events = await stream(gemini_provider, first_token_timeout=0.5)
    assert kinds(events)[-1] == "finish"


async def test_spent_deadline_sends_nothing(gemini_provider, gemini_fake):
    with pytest.raises(GatewayError) as caught:
        await stream(gemini_provider, deadline=time.monotonic() - 1)
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert gemini_fake.requests == []


async def test_connection_is_reused_across_calls(gemini_provider, gemini_fake):
    for _ in range(3):
        await stream(gemini_provider)
    await gemini_provider.complete_chat(chat_request(), gemini_ctx())
    assert len(gemini_fake.requests) == 4
    assert len({r.client_port for r in gemini_fake.requests}) == 1


async def test_generator_closed_before_start_sends_nothing(gemini_provider, gemini_fake):
    events = gemini_provider.stream_chat(chat_request(), gemini_ctx())
    with contextlib.suppress(StopAsyncIteration):
        await events.aclose()
    assert gemini_fake.requests == []
