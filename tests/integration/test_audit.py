"""The audit chain on both engines: verification, tampering, gaps, concurrent writers, duplicates."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

from sqlalchemy import delete, func, select, update

from homa_server.store.audit import GENESIS_HASH, append_audit, event_hash, verify
from homa_server.store.audit_query import AuditQuery, list_events
from homa_server.store.database import Database
from homa_server.store.records import OUTCOME_DENIED, OUTCOME_SUCCESS, AuditRecord
from homa_server.store.tables import audit_events


def _record(i: int, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time_us": 1_700_000_000_000_000 + i,
        "actor": f"key_{i % 3}",
        "action": "chat.ChatService/Complete" if i % 2 else "api_key.create",
        "outcome": OUTCOME_SUCCESS if i % 5 else OUTCOME_DENIED,
        "tenant": "acme" if i % 4 else "globex",
        "details": {"n": i, "nested": {"b": 1, "a": [1, 2]}},
        **extra,
    }
    return dataclasses.asdict(AuditRecord(**fields))


async def _append(database: Database, rows: list[dict[str, Any]]) -> None:
    async with database.begin() as connection:
        await append_audit(connection, rows)


async def _all(database: Database) -> list[dict[str, Any]]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(audit_events).order_by(audit_events.c.sequence))
        return [dict(row._mapping) for row in result]


async def test_chain_of_many_events_verifies(database: Database) -> None:
    for start in range(0, 250, 50):
        await _append(database, [_record(i) for i in range(start, start + 50)])
    rows = await _all(database)
    assert [row["sequence"] for row in rows] == list(range(1, 251))
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    result = await verify(database)
    assert result.ok
    assert result.checked_count == 250
    assert result.last_hash == rows[-1]["hash"]
    partial = await verify(database, 100, 120)
    assert partial.ok
    assert partial.checked_count == 21
    assert partial.last_hash == rows[119]["hash"]


async def test_modified_details_or_actor_is_detected(database: Database) -> None:
    await _append(database, [_record(i) for i in range(20)])
    async with database.begin() as connection:
        await connection.execute(
            update(audit_events).where(audit_events.c.sequence == 7).values(details={"n": 999})
        )
    result = await verify(database)
    assert (result.ok, result.first_broken_sequence, result.detail) == (False, 7, "hash mismatch")
    assert result.checked_count == 6
    async with database.begin() as connection:
        await connection.execute(
            update(audit_events).where(audit_events.c.sequence == 3).values(actor="someone-else")
        )
    result = await verify(database)
    assert (result.first_broken_sequence, result.detail) == (3, "hash mismatch")
    assert (await verify(database, 8)).ok  # the range after the altered rows is still intact


async def test_deleted_middle_row_is_a_gap(database: Database) -> None:
    await _append(database, [_record(i) for i in range(10)])
    async with database.begin() as connection:
        await connection.execute(delete(audit_events).where(audit_events.c.sequence == 5))
    result = await verify(database)
    assert (result.ok, result.first_broken_sequence, result.detail) == (False, 5, "gap")


async def test_rehashed_row_breaks_the_link_to_the_next(database: Database) -> None:
    await _append(database, [_record(i) for i in range(10)])
    rows = await _all(database)
    forged = {**rows[3], "actor": "forger"}
    async with database.begin() as connection:
        await connection.execute(
            update(audit_events)
            .where(audit_events.c.sequence == 4)
            .values(actor="forger", hash=event_hash(forged["prev_hash"], forged))
        )
    result = await verify(database)
    assert (result.first_broken_sequence, result.detail) == (5, "chain break")


async def test_purged_head_verifies_from_first_remaining(database: Database) -> None:
    await _append(database, [_record(i) for i in range(10)])
    async with database.begin() as connection:
        await connection.execute(delete(audit_events).where(audit_events.c.sequence <= 4))
    result = await verify(database)
    assert result.ok
    assert result.checked_count == 6


async def test_concurrent_writers_keep_a_gap_free_chain(db_url: str) -> None:
    first, second = Database(db_url), Database(db_url)
    try:
        batches = [[_record(b * 10 + i) for i in range(5)] for b in range(30)]
        await asyncio.gather(*(_append(first if n % 2 else second, batch) for n, batch in enumerate(batches)))
        rows = await _all(first)
        assert [row["sequence"] for row in rows] == list(range(1, 151))
        assert len({row["event_id"] for row in rows}) == 150
        assert (await verify(second)).ok
    finally:
        await first.aclose()
        await second.aclose()


async def test_duplicate_delivery_is_stored_once(database: Database) -> None:
    rows = [_record(i) for i in range(5)]
    await _append(database, rows)
    await _append(database, [rows[1], rows[3], _record(100), _record(100, event_id=rows[0]["event_id"])])
    stored = await _all(database)
    assert len(stored) == 6
    await _append(database, [_record(7, event_id="evt_same"), _record(8, event_id="evt_same")])
    async with database.engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(audit_events))).scalar_one()
    assert count == 7
    assert (await verify(database)).ok


async def test_long_fields_are_cut_to_fit_and_still_verify(database: Database) -> None:
    await _append(database, [_record(1, actor="x" * 1000, reason="R" * 200)])
    (row,) = await _all(database)
    assert len(row["actor"]) == 256
    assert len(row["reason"]) == 64
    assert (await verify(database)).ok


async def test_listing_filters_orders_pages_and_scopes_tenants(database: Database) -> None:
    await _append(database, [_record(i) for i in range(40)])
    page, after = await list_events(database, AuditQuery(page_size=15))
    assert [r["sequence"] for r in page] == list(range(40, 25, -1))
    assert after == 26
    page2, _ = await list_events(database, AuditQuery(page_size=15, after_sequence=after))
    assert page2[0]["sequence"] == 25
    asc, _ = await list_events(database, AuditQuery(descending=False, page_size=5))
    assert [r["sequence"] for r in asc] == [1, 2, 3, 4, 5]
    denied, _ = await list_events(database, AuditQuery(filter='outcome = DENIED AND action = "api_key.*"'))
    assert {r["sequence"] for r in denied} == {i + 1 for i in range(40) if i % 5 == 0 and i % 2 == 0}
    globex, _ = await list_events(database, AuditQuery(tenant="globex", page_size=1000))
    assert {r["tenant"] for r in globex} == {"globex"}
    assert len(globex) == 10
    actor, _ = await list_events(
        database, AuditQuery(filter='actor = "key_1"', start_us=1_700_000_000_000_010)
    )
    assert {r["sequence"] for r in actor} == {i + 1 for i in range(10, 40) if i % 3 == 1}
