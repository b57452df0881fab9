"""Retention: purge stored data older than the configured number of days, and audit each purge.

Contract (settings `retention.*`, see docs/audit.md):
    * `purge_once(database, settings, recorder, now_us)` deletes, in one transaction:
        - conversations whose `update_time_us` is older than `conversations_days`, with their
          messages;
        - usage rows whose `time_us` is older than `usage_days`;
        - audit events whose `time_us` is older than `audit_days`, EXCEPT the newest event, which is
          always kept so that sequence numbers keep increasing and new events still chain onto it.
      A class whose setting is unset is kept forever. Returns the number of rows deleted per class.
    * A run that deleted anything is itself audited: action "retention.purge", actor "system",
      outcome SUCCESS, details = the counts plus `audit_through_sequence` (the newest purged audit
      sequence, so a verifier can tell a purge from a deletion).
    * On PostgreSQL one replica purges at a time: a run that cannot take the advisory lock at once
      does nothing (another replica is purging) and returns {}.
    * `RetentionTask` runs `purge_once` every `interval_s` seconds (first run at start); errors are
      logged and retried at the next interval. `aclose()` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.settings import RetentionSettings
from homa_server.store import database as db
from homa_server.store.database import Database
from homa_server.store.records import OUTCOME_SUCCESS, AuditRecord, Recorder
from homa_server.store.tables import audit_events, conversation_messages, conversations, usage_records

log = logging.getLogger("homa.store")

DAY_US: Final = 86_400_000_000
PURGE_ACTION: Final = "retention.purge"
#: Advisory-lock key letting one replica purge at a time ("hmrt" in ASCII).
RETENTION_LOCK: Final = 0x686D7274


async def _purge_conversations(connection: AsyncConnection, cutoff: int) -> dict[str, int]:
    old = select(conversations.c.conversation_id).where(conversations.c.update_time_us < cutoff)
    messages = await connection.execute(
        delete(conversation_messages).where(conversation_messages.c.conversation_id.in_(old))
    )
    removed = await connection.execute(delete(conversations).where(conversations.c.update_time_us < cutoff))
    return {"conversations": removed.rowcount, "conversation_messages": messages.rowcount}


async def _purge_audit(connection: AsyncConnection, cutoff: int) -> dict[str, int]:
    newest = (await connection.execute(select(func.max(audit_events.c.sequence)))).scalar_one_or_none()
    if newest is None:
        return {"audit": 0}
    old = (audit_events.c.time_us < cutoff, audit_events.c.sequence < newest)
    through = (await connection.execute(select(func.max(audit_events.c.sequence)).where(*old))).scalar()
    removed = await connection.execute(delete(audit_events).where(*old))
    counts = {"audit": removed.rowcount}
    if through is not None:
        counts["audit_through_sequence"] = int(through)
    return counts


async def purge_once(
    database: Database, settings: RetentionSettings, recorder: Recorder, now_us: int | None = None
) -> dict[str, int]:
    """Delete what is past its retention (see the module docstring); returns counts per class."""
    if settings.conversations_days is None and settings.usage_days is None and settings.audit_days is None:
        return {}
    moment = db.now_us() if now_us is None else now_us
    counts: dict[str, int] = {}
    async with database.begin() as connection:
        if database.dialect == "postgresql":
            locked = await connection.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RETENTION_LOCK}
            )
            if not locked.scalar():
                return {}
        if settings.conversations_days is not None:
            counts.update(
                await _purge_conversations(connection, moment - settings.conversations_days * DAY_US)
            )
        if settings.usage_days is not None:
            cutoff = moment - settings.usage_days * DAY_US
            removed = await connection.execute(delete(usage_records).where(usage_records.c.time_us < cutoff))
            counts["usage"] = removed.rowcount
        if settings.audit_days is not None:
            counts.update(await _purge_audit(connection, moment - settings.audit_days * DAY_US))
    deleted = sum(v for k, v in counts.items() if k != "audit_through_sequence")
    if deleted:
        recorder.audit(
            AuditRecord(
                time_us=db.now_us(),
                actor="system",
                action=PURGE_ACTION,
                outcome=OUTCOME_SUCCESS,
                details=counts,
            )
        )
        log.info("retention purge", extra={"counts": counts})
    return counts


class RetentionTask:
    """Runs `purge_once` every `settings.interval_s` seconds in the background."""

    def __init__(self, database: Database, settings: RetentionSettings, recorder: Recorder) -> None:
        self._database = database
        self._settings = settings
        self._recorder = recorder
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (a no-op when no retention is configured or already started)."""
        s = self._settings
        if self._task is not None or (s.conversations_days, s.usage_days, s.audit_days) == (None, None, None):
            return
        self._task = asyncio.create_task(self._run(), name="homa-retention")

    async def _run(self) -> None:
        while True:
            try:
                await purge_once(self._database, self._settings, self._recorder)
            except Exception:
                log.exception("retention purge failed; will retry")
            await asyncio.sleep(self._settings.interval_s)

    async def aclose(self) -> None:
        """Stop the background task (a purge in progress is rolled back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
