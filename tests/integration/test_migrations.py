"""Alembic migrations on both engines: an empty database upgrades to head and matches the tables
exactly; a database at each earlier revision, holding data, upgrades to head keeping that data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from homa_server.store.database import Database, now_us
from homa_server.store.migrate import config
from homa_server.store.tables import api_keys, audit_events, metadata, usage_records
from tests.storage import drop_pg, scratch_dir

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A database with no tables at all, on each engine."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{scratch_dir() / 'empty.db'}")
        try:
            yield database
        finally:
            await database.aclose()
        return
    name = f"homa_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database = Database(f"{PG_SERVER}/{name}")
    try:
        yield database
    finally:
        await database.aclose()
        await drop_pg(f"{PG_SERVER}/{name}")


async def _schema_drift(database: Database) -> list[object]:
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )


def test_revisions_form_one_line() -> None:
    revisions = _revisions()
    assert revisions[0] == "0001"
    assert len(revisions) == len(set(revisions)) >= 3
    script = ScriptDirectory.from_config(config())
    assert script.get_heads() == [revisions[-1]]


async def test_empty_database_upgrades_to_head_matching_the_tables(empty_database: Database) -> None:
    assert await empty_database.current_revision() is None
    await empty_database.migrate()
    assert await empty_database.current_revision() == _revisions()[-1]
    assert await _schema_drift(empty_database) == []
    await empty_database.migrate()  # idempotent
    assert await empty_database.current_revision() == _revisions()[-1]


async def test_each_previous_revision_upgrades_with_its_data(empty_database: Database) -> None:
    revisions = _revisions()
    await empty_database.migrate(revisions[0])
    now = now_us()
    async with empty_database.begin() as connection:
        await connection.execute(
            api_keys.insert(),
            {
                "api_key_id": "key_old",
                "tenant": "acme",
                "name": "from 0001",
                "owner": "",
                "secret_hash": "a" * 64,
                "secret_prefix": "homa_sk_abcd",
                "scopes": ["chat:write"],
                "allowed_models": [],
                "rate_limits": {},
                "budgets": {},
                "labels": {"team": "x"},
                "revoked": False,
                "revoke_reason": "",
                "create_time_us": now,
                "update_time_us": now,
            },
        )
        await connection.execute(
            audit_events.insert(),
            {
                "sequence": 1,
                "event_id": "evt_old",
                "time_us": now,
                "actor": "cli",
                "tenant": "acme",
                "auth_method": "",
                "action": "api_key.create",
                "resource": "apiKeys/key_old",
                "outcome": 1,
                "reason": "",
                "request_id": "",
                "client_address": "",
                "details": {},
                "prev_hash": "0" * 64,
                "hash": "b" * 64,
            },
        )
    for revision in revisions[1:]:
        await empty_database.migrate(revision)
        assert await empty_database.current_revision() == revision
        if revision == "0002":
            async with empty_database.begin() as connection:
                await connection.execute(
                    usage_records.insert(),
                    {"record_id": "use_old", "time_us": now, "method": "chat.Complete", "tenant": "acme",
                     "status": "completed", "input_tokens": 7, "request_id": "", "api_key_id": "",
                     "principal": "", "auth_method": "", "model": "mock/echo", "provider": "mock",
                     "attempts": 1, "cached_input_tokens": 0, "output_tokens": 3, "reasoning_tokens": 0,
                     "images": 0, "audio_seconds": 0.0, "cost_micros": 0, "latency_ms": 1.0,
                     "cache_hit": False, "error_reason": ""},
                )  # fmt: skip
    assert await _schema_drift(empty_database) == []
    async with empty_database.begin() as connection:
        key = (await connection.execute(select(api_keys).where(api_keys.c.api_key_id == "key_old"))).one()
        assert (key.name, key.labels, key.scopes) == ("from 0001", {"team": "x"}, ["chat:write"])
        assert (await connection.execute(select(func.count()).select_from(audit_events))).scalar() == 1
        usage = (await connection.execute(select(usage_records.c.input_tokens))).scalars().all()
        assert usage == [7]
        if empty_database.dialect == "postgresql":
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            assert version == revisions[-1]
