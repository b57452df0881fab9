"""The durable bookkeeping outbox: records in, batched database writes out, off the request path.

Contract:
    * `usage()` / `audit()` implement `store.records.Recorder`: no await, no database access, never
      raise. Each record is appended as one JSON line (`{"kind": ..., "record": {...}}`) to this
      process's segment file with a single `write(2)`: once the call returns, the record is in the
      operating system's page cache and survives a crash (even SIGKILL) of the process. There is no
      fsync per record: a power loss or kernel crash may lose the last records not yet written back
      to disk by the OS (or already committed to the database).
    * Each live outbox holds an exclusive `fcntl.flock` on its own segment; a segment whose lock is
      free belongs to a dead process.
    * `start()` adopts and replays the segments of dead processes (oldest first), then starts the
      writer task. A database that is down at start does not fail `start()`: adopted segments are
      retried by the writer.
    * The writer reads new complete lines and writes them in batches (`batch_size` records) in ONE
      transaction through the sink of each kind (`sinks[kind](connection, rows)`), then advances; a
      fully written segment is deleted (rotation at `rotate_bytes`, and at `aclose()`).
    * Delivery is at-least-once: a replay after a crash between commit and advance hands the same
      rows to the sink again, so sinks must be idempotent by their record id (`insert_usage`: ON
      CONFLICT DO NOTHING on `record_id`; `append_audit`: skips stored `event_id`s under the chain
      lock). The check lives in the sinks, inside their transaction and lock, where it is safe
      against concurrent writers; the outbox does not query for it again.
    * Database trouble: records stay in the segment, the writer retries with exponential backoff
      (capped at `max_backoff_s`) and logs a warning; the request path never waits.
    * A torn last line (crash in the middle of a write) and undecodable lines are skipped with a warning.
    * `flush()` writes everything taken so far now and raises if the database fails (tests, shutdown).
    * `aclose()` stops the writer, flushes (on failure: the segment is left for replay) and releases
      the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.database import Database
from homa_server.store.records import AuditRecord, UsageRecord

log = logging.getLogger("homa.store")

#: Longest wait at close for a write in progress before it is cancelled.
_STOP_WAIT_S = 10.0
_USAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(UsageRecord))
_AUDIT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AuditRecord))

Sink = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]

_SUFFIX = ".seg"
_MAX_READ = 8 * 1024 * 1024


class _Segment:
    """One segment file this process holds the lock of, and how far it has been written out."""

    def __init__(self, path: Path, fd: int, *, own: bool) -> None:
        self.path = path
        self.fd = fd
        self.own = own
        self.offset = 0  # bytes already written to the database (or skipped)
        self.size = os.fstat(fd).st_size  # bytes appended so far

    def close(self, *, delete: bool) -> None:
        if delete:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)  # releases the flock


def _lock(path: Path, flags: int) -> int | None:
    """Open `path` and take its exclusive lock without waiting; None when another process holds it."""
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Outbox:
    """Takes usage and audit records and writes them to the database in batches (see module doc)."""

    def __init__(
        self,
        directory: Path,
        database: Database,
        sinks: Mapping[str, Sink],
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        rotate_bytes: int = 4 * 1024 * 1024,
        max_backoff_s: float = 30.0,
        rescan_interval_s: float = 60.0,
    ) -> None:
        self._directory = directory
        self._database = database
        self._sinks = dict(sinks)
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._rotate_bytes = rotate_bytes
        self._max_backoff = max_backoff_s
        self._rescan = rescan_interval_s
        self._own: _Segment | None = None
        self._adopted: list[_Segment] = []
        self._unsent = 0
        self._torn = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- the request path -------------------------------------------------------------------------

    def usage(self, record: UsageRecord) -> None:
        """Take one usage record (one append to the segment file, no database access)."""
        self._append("usage", {name: getattr(record, name) for name in _USAGE_FIELDS})

    def audit(self, record: AuditRecord) -> None:
        """Take one audit record (one append to the segment file, no database access)."""
        # Shallow: orjson serialises `details` itself; dataclasses.asdict would deep-copy it.
        self._append("audit", {name: getattr(record, name) for name in _AUDIT_FIELDS})

    def _append(self, kind: str, row: dict[str, Any]) -> None:
        segment = self._own
        if segment is None:
            log.error("outbox is not started; %s record dropped", kind)
            return
        line = orjson.dumps({"kind": kind, "record": row}) + b"\n"
        if self._torn:  # end the fragment of a short write so the next line stands alone
            line = b"\n" + line
        try:
            written = os.write(segment.fd, line)
        except OSError:
            log.exception("outbox append failed; %s record dropped", kind)
            return
        self._torn = written != len(line)
        segment.size += written
        self._unsent += 1
        if self._unsent >= self._batch_size:
            self._wake.set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create this process's segment, replay dead processes' segments, start the writer."""
        self._directory.mkdir(parents=True, exist_ok=True)
        self._own = self._new_segment()
        self._adopt_dead()
        if self._adopted:
            try:
                async with self._lock:
                    await self._drain_adopted()
            except Exception:
                log.warning("outbox replay failed; the writer will retry", exc_info=True)
        self._task = asyncio.create_task(self._run(), name="homa-outbox-writer")

    async def flush(self) -> None:
        """Write everything taken so far to the database now.

        Raises:
            Exception: whatever the database or a sink raised (records stay in the segment).
        """
        async with self._lock:
            await self._drain_adopted()
            if self._own is not None:
                await self._drain(self._own)
                self._maybe_rotate()

    async def aclose(self) -> None:
        """Stop the writer, flush, and release the segment (left on disk for replay if the flush fails)."""
        if self._task is not None:
            # Let a write in progress finish rather than cancelling it inside its transaction (a
            # SQLite connection cancelled mid-transaction can keep the write lock, and the final
            # flush would then wait for the busy timeout); cancel only if it does not end in time.
            self._stopping = True
            self._wake.set()
            try:
                async with asyncio.timeout(_STOP_WAIT_S):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                log.warning("outbox writer ended with an error", exc_info=True)
            self._task = None
        if self._own is None:
            return
        delete = False
        try:
            await self.flush()
            delete = self._own.offset >= self._own.size
        except Exception:
            log.warning("outbox flush at close failed; records kept for replay", exc_info=True)
        finally:
            self._own.close(delete=delete)
            self._own = None
            for segment in self._adopted:
                segment.close(delete=False)
            self._adopted = []

    # --- segments ---------------------------------------------------------------------------------

    def _new_segment(self) -> _Segment:
        """Create, lock, then publish (rename to `*.seg`) a segment: never visible unlocked."""
        name = f"seg-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        staging = self._directory / f"{name}.new"
        fd = _lock(staging, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        if fd is None:  # pragma: no cover - nobody else can hold a lock on a fresh unique name
            raise RuntimeError(f"cannot lock new outbox segment {staging}")
        path = staging.rename(self._directory / f"{name}{_SUFFIX}")
        return _Segment(path, fd, own=True)

    def _adopt_dead(self) -> None:
        """Take the lock of every segment whose owner is gone (oldest first)."""
        held = {s.path for s in self._adopted}
        if self._own is not None:
            held.add(self._own.path)
        for path in sorted(self._directory.glob(f"*{_SUFFIX}")):
            if path in held:
                continue
            fd = _lock(path, os.O_RDWR | os.O_CLOEXEC)
            if fd is not None:
                log.info("outbox: replaying segment of a dead process", extra={"segment": path.name})
                self._adopted.append(_Segment(path, fd, own=False))

    def _maybe_rotate(self) -> None:
        own = self._own
        if own is not None and own.offset >= own.size >= self._rotate_bytes:
            self._own = self._new_segment()
            self._torn = False
            own.close(delete=True)

    # --- the writer -------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._interval
        failures = 0
        last_scan = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return  # aclose() flushes what is left
            if time.monotonic() - last_scan >= self._rescan:
                last_scan = time.monotonic()
                self._adopt_dead()
            try:
                await self.flush()
            except Exception as exc:
                failures += 1
                delay = min(self._max_backoff, self._interval * 2**failures)
                log.warning(
                    "outbox write failed; records kept, retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": delay, "failures": failures},
                )
            else:
                failures, delay = 0, self._interval

    async def _drain_adopted(self) -> None:
        while self._adopted:
            segment = self._adopted[0]
            await self._drain(segment)
            segment.close(delete=True)
            self._adopted.pop(0)

    async def _drain(self, segment: _Segment) -> None:
        """Write out every complete line of `segment` that was there when the drain began, one batch
        per transaction.

        Records appended while a batch is being written wait for the next flush: chasing the tail
        would write tiny batches back to back under load, spending the event loop on transactions.
        """
        if not segment.own:
            segment.size = os.fstat(segment.fd).st_size
        end_of_drain = segment.size
        while segment.offset < end_of_drain:
            data = os.pread(segment.fd, min(end_of_drain - segment.offset, _MAX_READ), segment.offset)
            if not data:
                break
            batch: list[tuple[str, dict[str, Any]]] = []
            consumed = 0
            start = 0
            while len(batch) < self._batch_size:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                self._decode(data[start:end], segment, batch)
                start = consumed = end + 1
            if consumed == 0:
                if segment.own:
                    return  # our own last line is still being written (cannot happen in one thread)
                log.warning("outbox: torn last line skipped", extra={"segment": segment.path.name})
                segment.offset = segment.size
                return
            if batch:
                await self._write(batch)
            segment.offset += consumed
            if segment.own:
                self._unsent = max(0, self._unsent - len(batch))

    @staticmethod
    def _decode(line: bytes, segment: _Segment, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if not line.strip():
            return
        try:
            item = orjson.loads(line)
            batch.append((str(item["kind"]), dict(item["record"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("outbox: undecodable line skipped", extra={"segment": segment.path.name})

    async def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """One transaction: each kind's new rows (in arrival order) through its sink."""
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for kind, row in batch:
            by_kind.setdefault(kind, []).append(row)
        async with self._database.begin() as connection:
            for kind, rows in by_kind.items():
                sink = self._sinks.get(kind)
                if sink is None:
                    log.error("outbox: no sink for kind %r; %d records dropped", kind, len(rows))
                    continue
                await sink(connection, rows)
