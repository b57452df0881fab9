"""routing/metering.py and catalog/pricing.py: statuses, estimates, exactly-once, cost arithmetic."""

from __future__ import annotations

import asyncio

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.errors import Code, GatewayError, Reason, upstream_interrupted
from homa_server.routing.metering import UsageMeter
from homa_server.store.records import MemoryRecorder


def meter(recorder: MemoryRecorder, model: str = "echo") -> UsageMeter:
    request = chat_pb2.CompleteRequest(model=f"mock/{model}")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello there, how are you today?")
    return UsageMeter(
        recorder, request, provider="mock", kind="mock", model=model, method="chat.StreamComplete"
    )


def delta(text: str) -> chat_pb2.StreamCompleteResponse:
    return chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=text))


def test_cost_uses_the_cached_input_price_when_listed() -> None:
    # gpt-4o: input 2.50, cached 1.25, output 10.00 USD per million tokens = micro-USD per token.
    assert (
        cost_micros("openai", "gpt-4o", input_tokens=1000, cached_input_tokens=400, output_tokens=5) == 2050
    )
    # mock/echo lists no cached price: every input token at the input price.
    assert cost_micros("mock", "echo", input_tokens=10, cached_input_tokens=4, output_tokens=5) == 20
    assert (
        cost_micros("mock", "not-in-the-table", input_tokens=10, cached_input_tokens=0, output_tokens=5) == 0
    )


def test_completed_with_reported_usage_is_recorded_once() -> None:
    recorder = MemoryRecorder()
    m = meter(recorder)
    m.observe(delta("hi"))
    m.observe(chat_pb2.StreamCompleteResponse(usage=usage_pb2.Usage(input_tokens=7, output_tokens=3)))
    m.observe(chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish()))
    m.close(None)
    m.close(RuntimeError("again"))  # no second record
    (record,) = recorder.usage_records
    assert (record.status, record.input_tokens, record.output_tokens, record.cost_micros) == (
        "completed",
        7,
        3,
        13,
    )
    assert (record.model, record.provider, record.method) == ("mock/echo", "mock", "chat.StreamComplete")


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (asyncio.CancelledError(), "cancelled", ""),
        (GeneratorExit(), "cancelled", ""),
        (upstream_interrupted("mock", "cut"), "interrupted", "UPSTREAM_STREAM_INTERRUPTED"),
        (
            GatewayError("late", Code.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED),
            "interrupted",
            "DEADLINE_EXCEEDED",
        ),
    ],
)
def test_cut_streams_carry_estimated_delivered_tokens(error: BaseException, status: str, reason: str) -> None:
    recorder = MemoryRecorder()
    m = meter(recorder)
    m.observe(delta("one two three four"))
    m.close(error)
    (record,) = recorder.usage_records
    assert (record.status, record.error_reason) == (status, reason)
    assert record.output_tokens == 4  # "one two three four" in o200k_base
    assert record.input_tokens > 0
    assert record.cost_micros == record.input_tokens + 2 * record.output_tokens


def test_failure_before_output_is_failed_with_no_tokens() -> None:
    recorder = MemoryRecorder()
    m = meter(recorder)
    m.close(GatewayError("down", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE))
    (record,) = recorder.usage_records
    assert (record.status, record.error_reason, record.input_tokens, record.cost_micros) == (
        "failed",
        "UPSTREAM_UNAVAILABLE",
        0,
        0,
    )


def test_cancel_after_finish_counts_as_completed_and_route_follows_the_last_attempt() -> None:
    recorder = MemoryRecorder()
    m = meter(recorder, model="unlisted")
    m.route(provider="mock2", kind="mock", model="echo", attempts=2)
    m.observe(chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish()))
    m.close(GeneratorExit())
    (record,) = recorder.usage_records
    assert (record.status, record.model, record.provider, record.attempts) == (
        "completed",
        "mock2/echo",
        "mock2",
        2,
    )
