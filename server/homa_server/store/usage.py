"""Usage records: the outbox sink (idempotent insert) and aggregation queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.tables import usage_records


async def insert_usage(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Outbox sink: insert usage rows, ignoring ones already stored (same record_id)."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    await connection.execute(insert(usage_records).on_conflict_do_nothing(), rows)
