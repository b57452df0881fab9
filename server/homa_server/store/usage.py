"""Usage records: the outbox sink (idempotent insert) and the aggregation behind GetUsage/ExportUsage.

Contract:
    * `insert_usage` inserts rows, ignoring those whose `record_id` is already stored.
    * `aggregate_usage(db, query)` returns every aggregated row for the query (sorted by the group-by
      dimensions, in order) and the totals over all of them. Rows are summed in SQL per group and
      per UTC 15-minute bucket, then folded in Python into local days/hours of `query.time_zone`, so
      DST transitions and :30/:45 offsets land in the right bucket (every UTC offset in use is a
      multiple of 15 minutes).
    * Time range: `start_us <= time_us < end_us`. `tenant=None` means every tenant (the caller
      decides through `auth/tenancy.visible_tenant`); empty string filters mean "all".
    * `errors` counts every call that did not complete (failed, cancelled, interrupted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.database import Database
from homa_server.store.tables import usage_records

Dimension = Literal["api_key", "tenant", "model", "provider", "day", "hour"]

#: Non-time dimensions → the row key holding them.
KEY_FIELDS: Final[dict[str, str]] = {
    "api_key": "api_key_id",
    "tenant": "tenant",
    "model": "model",
    "provider": "provider",
}
#: Summed measures of an aggregated row, in output order.
MEASURES: Final = (
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_micros",
    "errors",
    "cache_hits",
)
_BUCKET_US: Final = 15 * 60 * 1_000_000
_UTC = dt.UTC


async def insert_usage(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Outbox sink: insert usage rows, ignoring ones already stored (same record_id)."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    await connection.execute(insert(usage_records).on_conflict_do_nothing(), rows)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated usage query (see rpc/admin_usage.py for the validation)."""

    start_us: int
    end_us: int
    tenant: str | None = None
    api_key_id: str = ""
    model: str = ""
    provider: str = ""
    group_by: tuple[Dimension, ...] = ()
    time_zone: str = "UTC"


@dataclass(slots=True)
class UsageResult:
    """Aggregated rows (plain dicts: group keys, `bucket_start_us` or None, measures) and totals."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)


def _empty(keys: dict[str, Any]) -> dict[str, Any]:
    return {**keys, **dict.fromkeys(MEASURES, 0)}


def _conditions(query: UsageQuery) -> list[ColumnElement[bool]]:
    c = usage_records.c
    conditions = [c.time_us >= query.start_us, c.time_us < query.end_us]
    if query.tenant is not None:
        conditions.append(c.tenant == query.tenant)
    for column, value in (
        (c.api_key_id, query.api_key_id),
        (c.model, query.model),
        (c.provider, query.provider),
    ):
        if value:
            conditions.append(column == value)
    return conditions


def _local_bucket(bucket_us: int, zone: ZoneInfo, unit: Dimension) -> int:
    """Start (UTC epoch µs) of the local day or hour containing the UTC 15-minute bucket."""
    local = dt.datetime.fromtimestamp(bucket_us / 1_000_000, tz=_UTC).astimezone(zone)
    if unit == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        # Hours whose offset changes at :30 (Lord Howe) fold correctly through the UTC round trip.
        return int(start.astimezone(_UTC).timestamp()) * 1_000_000
    midnight = dt.datetime(local.year, local.month, local.day, tzinfo=zone)
    return int(midnight.astimezone(_UTC).timestamp()) * 1_000_000


async def aggregate_usage(database: Database, query: UsageQuery) -> UsageResult:
    """All aggregated rows of `query` and their totals (see the module docstring)."""
    c = usage_records.c
    key_columns = [c[KEY_FIELDS[d]] for d in query.group_by if d in KEY_FIELDS]
    timed = next((d for d in query.group_by if d in ("day", "hour")), None)
    bucket = (c.time_us - c.time_us % _BUCKET_US).label("bucket") if timed else None
    measures = [
        func.count().label("requests"),
        func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(c.cached_input_tokens), 0).label("cached_input_tokens"),
        func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(c.reasoning_tokens), 0).label("reasoning_tokens"),
        func.coalesce(func.sum(c.cost_micros), 0).label("cost_micros"),
        func.coalesce(func.sum(case((c.status != "completed", 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(case((c.cache_hit.is_(True), 1), else_=0)), 0).label("cache_hits"),
    ]
    groups: list[Any] = [*key_columns, *([bucket] if bucket is not None else [])]
    statement = select(*groups, *measures).where(*_conditions(query))
    if groups:
        statement = statement.group_by(*groups)
    async with database.begin() as connection:
        fetched = (await connection.execute(statement)).mappings().all()
    zone = ZoneInfo(query.time_zone)
    folded: dict[tuple[Any, ...], dict[str, Any]] = {}
    totals = _empty({})
    for record in fetched:
        keys: dict[str, Any] = {
            KEY_FIELDS[d]: record[KEY_FIELDS[d]] for d in query.group_by if d in KEY_FIELDS
        }
        keys["bucket_start_us"] = _local_bucket(int(record["bucket"]), zone, timed) if timed else None
        ident = tuple(keys.values())
        row = folded.setdefault(ident, _empty(keys))
        for name in MEASURES:
            value = int(record[name] or 0)
            row[name] += value
            totals[name] += value
    if not query.group_by and not folded:
        folded[()] = _empty({"bucket_start_us": None})
    rows = sorted(folded.values(), key=lambda r: _sort_key(r, query.group_by))
    return UsageResult(rows=rows, totals=totals)


def _sort_key(row: dict[str, Any], group_by: Sequence[Dimension]) -> tuple[Any, ...]:
    return tuple(row["bucket_start_us"] if d in ("day", "hour") else row[KEY_FIELDS[d]] for d in group_by)
