"""store/outbox.py: durable segments, replay of dead processes, idempotence, database down, flush."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.audit import append_audit
from homa_server.store.database import Database
from homa_server.store.outbox import Outbox, Sink
from homa_server.store.records import OUTCOME_SUCCESS, AuditRecord, UsageRecord
from homa_server.store.tables import audit_events, usage_records
from homa_server.store.usage import insert_usage
from tests.storage import scratch_dir

SINKS: dict[str, Sink] = {"usage": insert_usage, "audit": append_audit}


def usage(n: int) -> UsageRecord:
    return UsageRecord(
        time_us=1_000_000 + n,
        method="chat.Complete",
        tenant="t1",
        status="completed",
        record_id=f"use_{n:04d}",
        output_tokens=n,
    )


async def count(database: Database, table: Any = usage_records) -> int:
    async with database.begin() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def write_dead_segment(
    directory: Path, lines: list[bytes], name: str = "seg-00000000000000000001-dead.seg"
) -> Path:
    """A segment as a killed process leaves it: complete lines, no lock held."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"".join(lines))
    return path


def line(kind: str, record: Any) -> bytes:
    return orjson.dumps({"kind": kind, "record": asdict(record)}) + b"\n"


@pytest.fixture
def outdir() -> Path:
    return scratch_dir() / "outbox"


async def test_records_reach_the_database_on_flush_and_segment_is_removed_at_close(
    database: Database, outdir: Path
) -> None:
    outbox = Outbox(outdir, database, SINKS, batch_size=7, flush_interval_s=60)
    await outbox.start()
    for n in range(20):
        outbox.usage(usage(n))
    outbox.audit(AuditRecord(time_us=1, actor="k", action="api_key.create", outcome=OUTCOME_SUCCESS))
    # Appended to the segment before anything is written to the database.
    (segment,) = segments(outdir)
    assert len(segment.read_bytes().splitlines()) == 21
    await outbox.flush()
    assert await count(database) == 20
    assert await count(database, audit_events) == 1
    await outbox.aclose()
    assert segments(outdir) == []


async def test_a_full_batch_wakes_the_writer(database: Database, outdir: Path) -> None:
    written = asyncio.Event()
    calls: list[int] = []

    async def sink(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        calls.append(len(rows))
        await insert_usage(connection, rows)
        written.set()

    # The interval is long: only the full batch can trigger the write.
    outbox = Outbox(outdir, database, {"usage": sink}, batch_size=3, flush_interval_s=30)
    await outbox.start()
    try:
        for n in range(3):
            outbox.usage(usage(n))
        async with asyncio.timeout(10):
            await written.wait()
        await outbox.flush()  # waits for the writer's transaction to end; nothing left to write
        assert calls == [3]
        assert await count(database) == 3
    finally:
        await outbox.aclose()


async def test_replays_a_dead_process_segment_skipping_a_torn_last_line(
    database: Database, outdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torn = line("usage", usage(99))[:-15]
    dead = write_dead_segment(outdir, [line("usage", usage(n)) for n in range(5)] + [torn])
    outbox = Outbox(outdir, database, SINKS, flush_interval_s=60)
    with caplog.at_level(logging.WARNING, "homa.store"):
        await outbox.start()
    try:
        assert await count(database) == 5
        assert not dead.exists()
        assert "torn last line" in caplog.text
    finally:
        await outbox.aclose()


async def test_a_live_process_segment_is_not_replayed(database: Database, outdir: Path) -> None:
    live = write_dead_segment(outdir, [line("usage", usage(1))])
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        outbox = Outbox(outdir, database, SINKS, flush_interval_s=60)
        await outbox.start()
        await outbox.flush()
        assert await count(database) == 0
        assert live.exists()
        await outbox.aclose()
    finally:
        os.close(fd)


async def test_replay_is_idempotent_for_usage_and_audit(database: Database, outdir: Path) -> None:
    audit = AuditRecord(time_us=5, actor="k", action="api_key.create", outcome=OUTCOME_SUCCESS)
    lines = [line("usage", usage(n)) for n in range(4)] + [line("audit", audit)]
    # The same records delivered twice: already stored (crash after commit, before delete) ...
    write_dead_segment(outdir, lines, "seg-00000000000000000001-a.seg")
    first = Outbox(outdir, database, SINKS, flush_interval_s=60)
    await first.start()
    await first.aclose()
    # ... and again, plus a duplicate inside one segment.
    write_dead_segment(outdir, lines + lines[:1], "seg-00000000000000000002-b.seg")
    second = Outbox(outdir, database, SINKS, flush_interval_s=60)
    await second.start()
    await second.aclose()
    assert await count(database) == 4
    assert await count(database, audit_events) == 1
    assert segments(outdir) == []


async def test_database_down_keeps_records_and_retries(database: Database, outdir: Path) -> None:
    calls: list[int] = []

    async def flaky(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            raise ConnectionError("database is down")
        await insert_usage(connection, rows)

    outbox = Outbox(outdir, database, {"usage": flaky}, flush_interval_s=60)
    await outbox.start()
    for n in range(3):
        outbox.usage(usage(n))
    with pytest.raises(ConnectionError):
        await outbox.flush()
    assert await count(database) == 0
    outbox.usage(usage(3))
    await outbox.flush()
    assert calls == [3, 4]
    assert await count(database) == 4
    await outbox.aclose()


async def test_close_with_database_down_leaves_the_segment_for_replay(
    database: Database, outdir: Path
) -> None:
    async def down(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        raise ConnectionError("down")

    outbox = Outbox(outdir, database, {"usage": down}, flush_interval_s=60)
    await outbox.start()
    outbox.usage(usage(1))
    outbox.usage(usage(2))
    await outbox.aclose()  # does not raise, keeps the records
    assert len(segments(outdir)) == 1
    again = Outbox(outdir, database, SINKS, flush_interval_s=60)
    await again.start()  # the lock is free now: replayed
    await again.aclose()
    assert await count(database) == 2
    assert segments(outdir) == []


async def test_background_writer_backs_off_and_recovers(
    database: Database, outdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()
    failures = 0

    async def flaky(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ConnectionError("down")
        await insert_usage(connection, rows)
        done.set()

    outbox = Outbox(outdir, database, {"usage": flaky}, flush_interval_s=0.01)
    with caplog.at_level(logging.WARNING, "homa.store"):
        await outbox.start()
        outbox.usage(usage(1))
        async with asyncio.timeout(10):
            await done.wait()
    await outbox.aclose()
    assert failures == 2
    assert await count(database) == 1
    assert "outbox write failed" in caplog.text


async def test_rotation_deletes_written_segments(database: Database, outdir: Path) -> None:
    outbox = Outbox(outdir, database, SINKS, flush_interval_s=60, rotate_bytes=1)
    await outbox.start()
    first = segments(outdir)
    outbox.usage(usage(1))
    await outbox.flush()
    assert segments(outdir) != first
    assert len(segments(outdir)) == 1
    outbox.usage(usage(2))
    await outbox.flush()
    await outbox.aclose()
    assert await count(database) == 2


async def test_undecodable_lines_are_skipped(database: Database, outdir: Path) -> None:
    write_dead_segment(outdir, [b"{not json\n", b'{"kind": "usage"}\n', line("usage", usage(7))])
    outbox = Outbox(outdir, database, SINKS, flush_interval_s=60)
    await outbox.start()
    await outbox.aclose()
    assert await count(database) == 1
