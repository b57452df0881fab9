"""Retention purge on both engines: exactly the old rows go, the newest audit event stays, the
purge is itself audited."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Table, select

from homa_server.settings import RetentionSettings
from homa_server.store.audit import append_audit, verify
from homa_server.store.database import Database
from homa_server.store.records import AuditRecord, MemoryRecorder, UsageRecord
from homa_server.store.retention import DAY_US, purge_once
from homa_server.store.tables import audit_events, conversation_messages, conversations, usage_records
from homa_server.store.usage import insert_usage

NOW = 1_800_000_000_000_000
OLD = NOW - 40 * DAY_US
RECENT = NOW - 5 * DAY_US
SETTINGS = RetentionSettings(conversations_days=30, usage_days=30, audit_days=30)


async def _seed(database: Database, audit_times: list[int]) -> None:
    async with database.begin() as connection:
        for cid, updated in (("conv_old", OLD), ("conv_new", RECENT), ("conv_touched", NOW - DAY_US)):
            await connection.execute(
                conversations.insert().values(
                    conversation_id=cid,
                    tenant="acme",
                    owner="u",
                    labels={},
                    create_time_us=OLD,
                    update_time_us=updated,
                )
            )
            await connection.execute(
                conversation_messages.insert(),
                [
                    {
                        "conversation_id": cid,
                        "idx": i,
                        "tenant": "acme",
                        "message": b"x",
                        "create_time_us": OLD,
                    }
                    for i in range(3)
                ],
            )
        usage = [
            UsageRecord(
                time_us=t, method="chat.Complete", tenant="acme", status="completed", record_id=f"u{i}"
            )
            for i, t in enumerate([OLD, OLD - 1, RECENT, NOW])
        ]
        await insert_usage(connection, [dataclasses.asdict(u) for u in usage])
        records = [
            AuditRecord(time_us=t, actor="a", action="api_key.create", outcome=1, event_id=f"evt_{i}")
            for i, t in enumerate(audit_times)
        ]
        await append_audit(connection, [dataclasses.asdict(r) for r in records])


async def _ids(database: Database, table: Table, column: str) -> list[Any]:
    async with database.engine.connect() as connection:
        rows = await connection.execute(select(table.c[column]).order_by(table.c[column]))
        return list(rows.scalars())


async def test_purge_deletes_exactly_the_old_rows_and_audits_itself(database: Database) -> None:
    await _seed(database, [OLD, OLD, OLD, RECENT])
    recorder = MemoryRecorder()
    counts = await purge_once(database, SETTINGS, recorder, NOW)
    assert counts == {
        "conversations": 1,
        "conversation_messages": 3,
        "usage": 2,
        "audit": 3,
        "audit_through_sequence": 3,
    }
    assert await _ids(database, conversations, "conversation_id") == ["conv_new", "conv_touched"]
    assert set(await _ids(database, conversation_messages, "conversation_id")) == {"conv_new", "conv_touched"}
    assert await _ids(database, usage_records, "record_id") == ["u2", "u3"]
    assert await _ids(database, audit_events, "sequence") == [4]
    (record,) = recorder.audit_records
    assert (record.action, record.actor, record.outcome, record.details) == (
        "retention.purge",
        "system",
        1,
        counts,
    )
    assert (await verify(database)).ok  # verification restarts from the first remaining event
    again = MemoryRecorder()
    assert await purge_once(database, SETTINGS, again, NOW) == {
        "conversations": 0,
        "conversation_messages": 0,
        "usage": 0,
        "audit": 0,
    }
    assert again.audit_records == []


async def test_newest_audit_event_is_always_kept(database: Database) -> None:
    await _seed(database, [OLD, OLD])
    counts = await purge_once(database, RetentionSettings(audit_days=1), MemoryRecorder(), NOW)
    assert counts == {"audit": 1, "audit_through_sequence": 1}
    assert await _ids(database, audit_events, "sequence") == [2]
    assert len(await _ids(database, usage_records, "record_id")) == 4  # usage kept forever


async def test_nothing_configured_purges_nothing(database: Database) -> None:
    await _seed(database, [OLD])
    recorder = MemoryRecorder()
    assert await purge_once(database, RetentionSettings(), recorder, NOW) == {}
    assert len(await _ids(database, conversations, "conversation_id")) == 3
    assert recorder.audit_records == []
