"""Usage recording end to end, on both engines: one row per admitted call, statuses, tokens and cost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import select

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import start, stop
from homa_server.store.records import AuditRecord, Recorder, UsageRecord
from homa_server.store.tables import usage_records
from tests.conftest import RunningServer, make_settings

# mock/echo list prices in models.yaml: input 1.00, output 2.00 USD per million tokens.
ECHO_INPUT_PRICE, ECHO_OUTPUT_PRICE = 1, 2


class CountingRecorder:
    """Forwards to the real recorder and lets a test await the n-th usage record (no sleeps)."""

    def __init__(self, inner: Recorder) -> None:
        self.inner = inner
        self.records: list[UsageRecord] = []
        self._changed = asyncio.Event()

    def usage(self, record: UsageRecord) -> None:
        self.records.append(record)
        self.inner.usage(record)
        self._changed.set()

    def audit(self, record: AuditRecord) -> None:
        self.inner.audit(record)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def usage_server(db_url: str) -> AsyncIterator[tuple[RunningServer, CountingRecorder]]:
    # The calls repeat identical requests: with the response cache they would be hits, not calls.
    gateway, built = await start(make_settings(**{"storage.url": db_url, "cache.enabled": False}))
    spy = CountingRecorder(gateway.recorder)
    gateway.dispatcher.recorder = spy
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel), spy
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def request(model: str, text: str = "hello there", cls: Any = chat_pb2.CompleteRequest) -> Any:
    message = cls(model=model)
    message.messages.add(role=content_pb2.ROLE_USER).parts.add(text=text)
    return message


async def stored_rows(server: RunningServer) -> list[dict[str, Any]]:
    assert server.gateway.outbox is not None
    await server.gateway.outbox.flush()
    async with server.gateway.db.begin() as connection:
        return [dict(r) for r in (await connection.execute(select(usage_records))).mappings()]


async def test_rows_equal_admitted_calls_with_right_statuses_tokens_and_cost(
    usage_server: tuple[RunningServer, CountingRecorder],
) -> None:
    server, spy = usage_server
    stub = chat_grpc.ChatServiceStub(server.channel)
    expected: Counter[tuple[str, str, str]] = Counter()
    usages = []

    for _ in range(3):
        response = await stub.Complete(request("mock/echo"), metadata=(("x-request-id", "ok-unary"),))
        usages.append(response.usage)
        expected["chat.Complete", "mock/echo", "completed"] += 1
    for _ in range(2):
        with pytest.raises(aio.AioRpcError):
            await stub.Complete(request("mock/unavailable"))
        expected["chat.Complete", "mock/unavailable", "failed"] += 1
    # Not admitted: invalid request, unknown model.
    with pytest.raises(aio.AioRpcError):
        await stub.Complete(chat_pb2.CompleteRequest(model="mock/echo"))
    with pytest.raises(aio.AioRpcError):
        await stub.Complete(request("nosuchprovider/x"))
    for _ in range(2):
        async for _event in stub.StreamComplete(request("mock/echo", cls=chat_pb2.StreamCompleteRequest)):
            pass
        expected["chat.StreamComplete", "mock/echo", "completed"] += 1
    delivered = []
    for _ in range(2):
        with pytest.raises(aio.AioRpcError):
            async for event in stub.StreamComplete(
                request("mock/die-midway", cls=chat_pb2.StreamCompleteRequest)
            ):
                if event.WhichOneof("event") == "delta":
                    delivered.append(event.delta.text)
        expected["chat.StreamComplete", "mock/die-midway", "interrupted"] += 1
    # Client cancel after the first text delta.
    call = stub.StreamComplete(request("mock/slow", "x" * 200, cls=chat_pb2.StreamCompleteRequest))
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    expected["chat.StreamComplete", "mock/slow", "cancelled"] += 1
    # A two-turn Converse: one record per turn.
    user = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text="hi")])

    async def turns() -> AsyncIterator[chat_pb2.ConverseRequest]:
        yield chat_pb2.ConverseRequest(start=chat_pb2.ConverseStart(model="mock/echo"))
        yield chat_pb2.ConverseRequest(message=user)
        yield chat_pb2.ConverseRequest(message=user)

    async for _event in stub.Converse(turns()):
        pass
    expected["chat.Converse", "mock/echo", "completed"] += 2

    await spy.wait_for(sum(expected.values()))
    rows = await stored_rows(server)
    assert Counter((r["method"], r["model"], r["status"]) for r in rows) == expected
    assert len({r["record_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["provider"] == "mock"
        assert row["tenant"]
        assert row["attempts"] == 1
        assert row["latency_ms"] >= 0
        if row["model"] == "mock/echo":
            price = row["input_tokens"] * ECHO_INPUT_PRICE + row["output_tokens"] * ECHO_OUTPUT_PRICE
            assert row["cost_micros"] == price > 0
        else:  # scenarios not in the price table: unknown price, cost 0
            assert row["cost_micros"] == 0
    unary = [r for r in rows if r["request_id"] == "ok-unary"]
    assert len(unary) == 3
    assert unary[0]["input_tokens"] == usages[0].input_tokens
    assert unary[0]["output_tokens"] == usages[0].output_tokens
    assert unary[0]["cost_micros"] == usages[0].input_tokens * 1 + usages[0].output_tokens * 2
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["error_reason"] for r in failed} == {"UPSTREAM_UNAVAILABLE"}
    assert all(r["output_tokens"] == 0 for r in failed)
    cut = [r for r in rows if r["status"] == "interrupted"]
    assert {r["error_reason"] for r in cut} == {"UPSTREAM_STREAM_INTERRUPTED"}
    assert all(r["output_tokens"] > 0 and r["input_tokens"] > 0 for r in cut)  # delivered text, estimated
    cancelled = next(r for r in rows if r["status"] == "cancelled")
    assert cancelled["output_tokens"] >= 1
    assert cancelled["input_tokens"] > 0


async def test_no_recorder_records_nothing(usage_server: tuple[RunningServer, CountingRecorder]) -> None:
    server, spy = usage_server
    server.gateway.dispatcher.recorder = None
    await chat_grpc.ChatServiceStub(server.channel).Complete(request("mock/echo"))
    assert spy.records == []
    assert await stored_rows(server) == []


async def test_deadline_mid_stream_and_converse_cancel(
    usage_server: tuple[RunningServer, CountingRecorder],
) -> None:
    server, spy = usage_server
    stub = chat_grpc.ChatServiceStub(server.channel)
    slow = request("mock/slow", "y" * 200, cls=chat_pb2.StreamCompleteRequest)
    slow.options.timeout.FromMilliseconds(700)  # enforced by the gateway, after some deltas
    with pytest.raises(aio.AioRpcError) as info:
        async for _event in stub.StreamComplete(slow):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    user = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text="z" * 200)])

    async def turns() -> AsyncIterator[chat_pb2.ConverseRequest]:
        yield chat_pb2.ConverseRequest(start=chat_pb2.ConverseStart(model="mock/slow"))
        yield chat_pb2.ConverseRequest(message=user)
        await asyncio.Event().wait()  # keep the stream open

    call = stub.Converse(turns())
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    call.cancel()
    await spy.wait_for(2)
    rows = await stored_rows(server)
    by_method = {r["method"]: r for r in rows}
    assert len(rows) == 2
    cut = by_method["chat.StreamComplete"]
    assert (cut["status"], cut["error_reason"]) == ("interrupted", "DEADLINE_EXCEEDED")
    assert cut["output_tokens"] > 0
    turn = by_method["chat.Converse"]
    assert turn["status"] == "cancelled"
    assert turn["output_tokens"] > 0
