"""The bookkeeping outbox: records in, batched database writes out, off the request path.

PROVISIONAL (to be replaced by the durable segment-file outbox): records are kept in memory and
flushed in batches by a background task; `aclose()` flushes what is left.

Contract (the final one):
    * `usage()` / `audit()` implement `store.records.Recorder`: no await, no database access.
    * `start()` replays records left by a process that died, then starts the writer task.
    * A batch is written in one transaction through the sink registered for its kind
      (`sinks[kind](connection, rows)`); sinks must be idempotent (at-least-once delivery).
    * `flush()` waits until every record taken so far is in the database (tests, shutdown).
    * `aclose()` flushes and stops the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.database import Database
from homa_server.store.records import AuditRecord, UsageRecord

log = logging.getLogger("homa.store")

Sink = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]


class Outbox:
    """Takes usage and audit records and writes them to the database in batches."""

    def __init__(
        self,
        directory: Path,
        database: Database,
        sinks: Mapping[str, Sink],
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
    ) -> None:
        self._directory = directory
        self._database = database
        self._sinks = dict(sinks)
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="homa-outbox-writer")

    def usage(self, record: UsageRecord) -> None:
        """Take one usage record (no I/O)."""
        self._pending.append(("usage", dataclasses.asdict(record)))

    def audit(self, record: AuditRecord) -> None:
        """Take one audit record (no I/O)."""
        self._pending.append(("audit", dataclasses.asdict(record)))

    async def flush(self) -> None:
        """Write everything taken so far."""
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size :]
                by_kind: dict[str, list[dict[str, Any]]] = {}
                for kind, row in batch:
                    by_kind.setdefault(kind, []).append(row)
                async with self._database.begin() as connection:
                    for kind, rows in by_kind.items():
                        await self._sinks[kind](connection, rows)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("outbox flush failed; will retry")

    async def aclose(self) -> None:
        """Flush what is left and stop the writer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
