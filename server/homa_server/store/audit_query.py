"""Reading the audit log: filtered, tenant-scoped, keyset-paged listing of stored events.

Contract:
    * `list_events` returns stored events (as dicts of the `audit_events` columns) and the sequence
      to continue after, or None when there is no further page. Paging is by `sequence` (keyset), so
      events appended between pages never shift or repeat what the caller already saw.
    * `tenant=None` lists every tenant (cross-tenant callers only; the caller checks that with
      `auth.tenancy.visible_tenant`); otherwise only events of that tenant are returned.
    * The filter is AIP-160 over `AUDIT_FILTER_FIELDS` (store/filtering.py); `action = "api_key.*"`
      style wildcards work on every string field; `outcome` takes SUCCESS / DENIED / FAILURE (or the
      full AUDIT_OUTCOME_* names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, select

from homa_server.store.database import Database
from homa_server.store.filtering import FilterField, compile_filter
from homa_server.store.records import OUTCOME_DENIED, OUTCOME_FAILURE, OUTCOME_SUCCESS
from homa_server.store.tables import audit_events

_c = audit_events.c

OUTCOME_NAMES: Final = {
    "SUCCESS": OUTCOME_SUCCESS,
    "DENIED": OUTCOME_DENIED,
    "FAILURE": OUTCOME_FAILURE,
    "AUDIT_OUTCOME_SUCCESS": OUTCOME_SUCCESS,
    "AUDIT_OUTCOME_DENIED": OUTCOME_DENIED,
    "AUDIT_OUTCOME_FAILURE": OUTCOME_FAILURE,
}

AUDIT_FILTER_FIELDS: Final = {
    "actor": FilterField(_c.actor),
    "action": FilterField(_c.action),
    "outcome": FilterField(_c.outcome, "enum", OUTCOME_NAMES),
    "tenant": FilterField(_c.tenant),
    "resource": FilterField(_c.resource),
    "request_id": FilterField(_c.request_id),
    "event_id": FilterField(_c.event_id),
    "auth_method": FilterField(_c.auth_method),
    "reason": FilterField(_c.reason),
    "client_address": FilterField(_c.client_address),
    "sequence": FilterField(_c.sequence, "int"),
    "time": FilterField(_c.time_us, "time"),
}


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to list. Times are epoch µs (`start_us` inclusive, `end_us` exclusive; None = open)."""

    tenant: str | None = None
    filter: str = ""
    start_us: int | None = None
    end_us: int | None = None
    descending: bool = True
    page_size: int = 100
    after_sequence: int | None = None


def _conditions(query: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.tenant is not None:
        conditions.append(_c.tenant == query.tenant)
    if query.start_us is not None:
        conditions.append(_c.time_us >= query.start_us)
    if query.end_us is not None:
        conditions.append(_c.time_us < query.end_us)
    compiled = compile_filter(query.filter, AUDIT_FILTER_FIELDS)
    if compiled is not None:
        conditions.append(compiled)
    if query.after_sequence is not None:
        after = query.after_sequence
        conditions.append(_c.sequence < after if query.descending else _c.sequence > after)
    return conditions


def select_events(query: AuditQuery) -> Select[Any]:
    """The SELECT of one page plus one row (to know whether another page follows).

    Raises:
        GatewayError: INVALID_ARGUMENT (field `filter`) for a filter outside the supported subset.
    """
    order = _c.sequence.desc() if query.descending else _c.sequence.asc()
    return select(audit_events).where(*_conditions(query)).order_by(order).limit(query.page_size + 1)


async def list_events(database: Database, query: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
    """One page of events and the sequence to continue after (None when this is the last page)."""
    statement = select_events(query)
    async with database.engine.connect() as connection:
        rows = [dict(row._mapping) for row in (await connection.execute(statement)).all()]
    if len(rows) > query.page_size:
        rows = rows[: query.page_size]
        return rows, int(rows[-1]["sequence"])
    return rows, None
