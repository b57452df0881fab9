"""The tamper-evident audit log: the chained outbox sink, listing and verification.

Hash chain (what `verify` recomputes, and what docs/audit.md documents):
    * Every stored event has a `sequence` (1, 2, 3... with no gaps), a `prev_hash` (the `hash` of
      the event with sequence - 1, or `GENESIS_HASH` = 64 zeros for sequence 1) and a `hash`.
    * The canonical form of an event is the JSON text of an object holding EVERY stored column
      except `hash` (event_id, sequence, time_us, actor, tenant, auth_method, action, resource,
      outcome, reason, request_id, client_address, details, prev_hash), serialised with
      `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)` (so nested
      `details` keys are sorted too, and the text is pure ASCII).
    * `hash` = lowercase hex SHA-256 of the UTF-8 bytes of `prev_hash + canonical`.

Writer contract (`append_audit`, the outbox sink for kind "audit"):
    * Runs inside the outbox's transaction. The chain head is serialised across processes and
      replicas: on PostgreSQL with `pg_advisory_xact_lock(AUDIT_CHAIN_LOCK)` (released at commit),
      on SQLite by taking the database write lock (a no-op UPDATE) before reading the last row.
    * Idempotent: a record whose `event_id` is already stored (or repeated in the batch) is skipped.
    * String fields longer than their column are cut to fit (the stored, hashed value is the cut one);
      `details` are normalised through a JSON round trip so that what is hashed is what is read back.

Retention may purge the oldest events (store/retention.py never purges the newest one, so sequence
numbers keep increasing): verification then starts from the first remaining event, trusting its
`prev_hash` as the anchor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Row, String, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.database import Database
from homa_server.store.tables import audit_events

GENESIS_HASH: Final = "0" * 64
#: Advisory-lock key serialising the chain head on PostgreSQL ("hmau" in ASCII).
AUDIT_CHAIN_LOCK: Final = 0x686D6175
#: Columns of the canonical form, i.e. every stored column except `hash`.
CANONICAL_FIELDS: Final = tuple(c.name for c in audit_events.columns if c.name != "hash")
#: Rows read per query while verifying.
_VERIFY_CHUNK = 1000

_DEFAULTS: Final[dict[str, Any]] = {
    "tenant": "",
    "auth_method": "",
    "resource": "",
    "reason": "",
    "request_id": "",
    "client_address": "",
}


def canonical_form(event: Mapping[Any, Any]) -> str:
    """The canonical JSON text of a stored event (see the module docstring)."""
    body = {name: event[name] for name in CANONICAL_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def event_hash(prev_hash: str, event: Mapping[Any, Any]) -> str:
    """Hex SHA-256 of `prev_hash` followed by the canonical form of `event`."""
    return hashlib.sha256((prev_hash + canonical_form(event)).encode("utf-8")).hexdigest()


#: Declared length of each string column (looked up once, not per row).
_LENGTHS: Final[dict[str, int]] = {
    c.name: int(c.type.length) for c in audit_events.columns if isinstance(c.type, String) and c.type.length
}


def _fit(name: str, value: Any) -> Any:
    length = _LENGTHS.get(name)
    if length is not None and isinstance(value, str) and len(value) > length:
        return value[:length]
    return value


def _normalise(row: Mapping[str, Any]) -> dict[str, Any]:
    event = {**_DEFAULTS, **{k: v for k, v in row.items() if k in _COLUMNS}}
    event["details"] = json.loads(json.dumps(event.get("details") or {}, default=str))
    event["time_us"] = int(event["time_us"])
    event["outcome"] = int(event["outcome"])
    return {name: _fit(name, value) for name, value in event.items()}


_COLUMNS: Final = frozenset(c.name for c in audit_events.columns)


async def _lock_chain_head(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_CHAIN_LOCK})
    else:
        # A write statement takes SQLite's database write lock for the rest of the transaction,
        # so the read of the chain head below cannot interleave with another writer's.
        await connection.execute(
            update(audit_events).where(audit_events.c.sequence < 0).values(sequence=audit_events.c.sequence)
        )


async def append_audit(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Outbox sink: append audit events, assigning sequence numbers and chained hashes.

    Args:
        connection: a connection inside the outbox's transaction.
        rows: `dataclasses.asdict(AuditRecord)` dictionaries (extra keys are ignored).
    """
    if not rows:
        return
    await _lock_chain_head(connection)
    ids = list({str(row["event_id"]) for row in rows})
    stored = set(
        (
            await connection.execute(select(audit_events.c.event_id).where(audit_events.c.event_id.in_(ids)))
        ).scalars()
    )
    last = (
        await connection.execute(
            select(audit_events.c.sequence, audit_events.c.hash)
            .order_by(audit_events.c.sequence.desc())
            .limit(1)
        )
    ).first()
    sequence, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)
    out = []
    for row in rows:
        if row["event_id"] in stored:
            continue
        stored.add(row["event_id"])
        sequence += 1
        event = {**_normalise(row), "sequence": sequence, "prev_hash": prev}
        event["hash"] = prev = event_hash(prev, event)
        out.append(event)
    if out:
        await connection.execute(audit_events.insert(), out)


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of `verify` (mirrors VerifyAuditLogResponse)."""

    ok: bool
    checked_count: int
    first_broken_sequence: int | None = None
    detail: str = ""
    last_hash: str = ""


async def _anchor(connection: AsyncConnection, first: int) -> tuple[int, str | None]:
    """(first sequence to check, expected prev_hash or None = trust the first row's)."""
    bounds = (await connection.execute(select(func.min(audit_events.c.sequence)))).scalar_one_or_none()
    oldest = int(bounds) if bounds is not None else 1
    if first <= oldest:
        return oldest, (GENESIS_HASH if oldest == 1 else None)
    before = (
        await connection.execute(select(audit_events.c.hash).where(audit_events.c.sequence == first - 1))
    ).scalar_one_or_none()
    return first, (str(before) if before is not None else None)


def _check(rows: Iterable[Row[Any]], expected: int, prev: str | None) -> tuple[int, str | None, str]:
    """Check rows in order; returns (next expected sequence, prev hash, problem or "")."""
    for row in rows:
        event = row._mapping
        if event["sequence"] != expected:
            return expected, prev, "gap"
        if prev is not None and event["prev_hash"] != prev:
            return expected, prev, "chain break"
        if event_hash(event["prev_hash"], event) != event["hash"]:
            return expected, prev, "hash mismatch"
        prev = str(event["hash"])
        expected += 1
    return expected, prev, ""


async def verify(database: Database, start: int | None = None, end: int | None = None) -> Verification:
    """Recompute the chain from `start` (default: the first stored event) to `end` inclusive
    (default: the latest) and report the first missing ("gap"), altered ("hash mismatch") or
    unlinked ("chain break") event. A `start` whose predecessor is stored is anchored on that
    predecessor's hash; the first remaining event after a retention purge on its own `prev_hash`.
    """
    async with database.engine.connect() as connection:
        latest = (await connection.execute(select(func.max(audit_events.c.sequence)))).scalar_one_or_none()
        if latest is None:
            return Verification(ok=True, checked_count=0)
        last = min(int(latest), end) if end is not None else int(latest)
        expected, prev = await _anchor(connection, max(start or 1, 1))
        first = expected
        while expected <= last:
            chunk = (
                await connection.execute(
                    select(audit_events)
                    .where(audit_events.c.sequence >= expected, audit_events.c.sequence <= last)
                    .order_by(audit_events.c.sequence)
                    .limit(_VERIFY_CHUNK)
                )
            ).all()
            if not chunk:
                return Verification(False, expected - first, expected, "gap", prev or "")
            expected, prev, problem = _check(chunk, expected, prev)
            if problem:
                return Verification(False, expected - first, expected, problem, prev or "")
        return Verification(ok=True, checked_count=expected - first, last_hash=prev or "")
