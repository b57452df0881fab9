"""The compliance report: sections gathered from the audit log, usage rows and retention settings.

Contract (see docs/audit.md):
    * `build_report` reads one period [start_us, end_us) for one tenant (None = every tenant):
        - access_summary: per (actor, tenant, auth_method), successful and denied RPC calls, the
          services used and first/last call, from audit events whose action is an RPC
          ("<pkg>.<Service>/<Method>");
        - feature_usage: per usage `method`, calls, errors (status other than completed), input +
          output tokens and cost, from `usage_records`;
        - failed_authentications: "auth.failed" events grouped by principal hint, masked address and
          reason (only in an all-tenant report: failed authentications belong to no tenant);
        - admin_changes: every other audited action (api_key.*, webhook.*, cache.*, retention.purge...);
        - retention: per data class (audit, usage, conversations) the configured retention, the
          oldest stored record, how many records are past it, and whether it is encrypted at rest.
      Each section is cut at `SECTION_LIMIT` entries, and `truncated` tells.
    * Rendering as a document is in reports/compliance_document.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, case, func, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.settings import RetentionSettings
from homa_server.store.database import Database
from homa_server.store.records import OUTCOME_DENIED, OUTCOME_SUCCESS
from homa_server.store.tables import audit_events, conversations, usage_records

SECTION_LIMIT: Final = 10_000
AUTH_FAILED: Final = "auth.failed"
_DAY_US: Final = 86_400_000_000
_A = audit_events.c
_U = usage_records.c


@dataclass
class ComplianceData:
    """The report content; times are epoch µs, sections are lists of plain dicts."""

    start_us: int
    end_us: int
    generate_us: int
    tenant: str
    access_summary: list[dict[str, Any]] = field(default_factory=list)
    feature_usage: list[dict[str, Any]] = field(default_factory=list)
    failed_authentications: list[dict[str, Any]] = field(default_factory=list)
    admin_changes: list[dict[str, Any]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


def _is_rpc() -> ColumnElement[bool]:
    return _A.action.like("%/%")


def _audit_scope(tenant: str | None, start_us: int, end_us: int) -> list[ColumnElement[bool]]:
    scope = [_A.time_us >= start_us, _A.time_us < end_us]
    return scope if tenant is None else [*scope, _A.tenant == tenant]


async def _access(conn: AsyncConnection, tenant: str | None, start: int, end: int) -> list[dict[str, Any]]:
    statement = (
        select(
            _A.actor,
            _A.tenant,
            _A.auth_method,
            _A.action,
            func.sum(case((_A.outcome == OUTCOME_SUCCESS, 1), else_=0)),
            func.sum(case((_A.outcome == OUTCOME_DENIED, 1), else_=0)),
            func.min(_A.time_us),
            func.max(_A.time_us),
        )
        .where(*_audit_scope(tenant, start, end), _is_rpc(), _A.actor != "")
        .group_by(_A.actor, _A.tenant, _A.auth_method, _A.action)
    )
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for actor, row_tenant, method, action, ok, denied, first, last in await conn.execute(statement):
        entry = found.setdefault(
            (actor, row_tenant, method),
            {
                "principal": actor,
                "tenant": row_tenant,
                "auth_method": method,
                "requests": 0,
                "denied_requests": 0,
                "services": set(),
                "first_access_us": first,
                "last_access_us": last,
            },
        )
        entry["requests"] += int(ok or 0)
        entry["denied_requests"] += int(denied or 0)
        entry["services"].add(action.split(".", 1)[0])
        entry["first_access_us"] = min(entry["first_access_us"], first)
        entry["last_access_us"] = max(entry["last_access_us"], last)
    rows = [found[key] for key in sorted(found)]
    for row in rows:
        row["services"] = sorted(row["services"])
    return rows


async def _features(conn: AsyncConnection, tenant: str | None, start: int, end: int) -> list[dict[str, Any]]:
    scope = [_U.time_us >= start, _U.time_us < end]
    if tenant is not None:
        scope.append(_U.tenant == tenant)
    statement = (
        select(
            _U.method,
            func.count(),
            func.sum(case((_U.status != "completed", 1), else_=0)),
            func.sum(_U.input_tokens + _U.output_tokens),
            func.sum(_U.cost_micros),
        )
        .where(*scope)
        .group_by(_U.method)
        .order_by(_U.method)
        .limit(SECTION_LIMIT + 1)
    )
    return [
        {
            "feature": method,
            "requests": int(count),
            "errors": int(errors or 0),
            "total_tokens": int(tokens or 0),
            "cost_micros": int(cost or 0),
        }
        for method, count, errors, tokens, cost in await conn.execute(statement)
    ]


async def _failed(conn: AsyncConnection, tenant: str | None, start: int, end: int) -> list[dict[str, Any]]:
    if tenant is not None:
        return []
    hint = _A.details["principal_hint"].as_string()
    statement = (
        select(hint, _A.client_address, _A.reason, func.count(), func.min(_A.time_us), func.max(_A.time_us))
        .where(*_audit_scope(None, start, end), _A.action == AUTH_FAILED)
        .group_by(hint, _A.client_address, _A.reason)
        .order_by(func.count().desc(), _A.client_address, _A.reason)
        .limit(SECTION_LIMIT + 1)
    )
    return [
        {
            "principal_hint": principal_hint or "",
            "client_address": address,
            "reason": reason,
            "count": int(count),
            "first_us": first,
            "last_us": last,
        }
        for principal_hint, address, reason, count, first, last in await conn.execute(statement)
    ]


async def _admin(conn: AsyncConnection, tenant: str | None, start: int, end: int) -> list[dict[str, Any]]:
    statement = (
        select(audit_events)
        .where(*_audit_scope(tenant, start, end), not_(_is_rpc()), _A.action != AUTH_FAILED)
        .order_by(_A.sequence)
        .limit(SECTION_LIMIT + 1)
    )
    return [dict(row._mapping) for row in await conn.execute(statement)]


async def _retention_row(
    conn: AsyncConnection, data_class: str, days: int | None, when: Any, scope: list[Any], *, now_us: int
) -> dict[str, Any]:
    oldest = (await conn.execute(select(func.min(when)).where(*scope))).scalar_one_or_none()
    overdue = 0
    if days is not None:
        cutoff = now_us - days * _DAY_US
        overdue = int((await conn.execute(select(func.count()).where(*scope, when < cutoff))).scalar_one())
    return {
        "data_class": data_class,
        "retention_days": days,
        "oldest_us": oldest,
        "overdue_records": overdue,
        "encrypted_at_rest": data_class == "conversations",
    }


async def _retention(
    conn: AsyncConnection, tenant: str | None, settings: RetentionSettings, now_us: int
) -> list[dict[str, Any]]:
    def scoped(column: Any) -> list[Any]:
        return [] if tenant is None else [column == tenant]

    c = conversations.c
    return [
        await _retention_row(
            conn, "audit", settings.audit_days, _A.time_us, scoped(_A.tenant), now_us=now_us
        ),
        await _retention_row(
            conn, "usage", settings.usage_days, _U.time_us, scoped(_U.tenant), now_us=now_us
        ),
        await _retention_row(
            conn,
            "conversations",
            settings.conversations_days,
            c.update_time_us,
            scoped(c.tenant),
            now_us=now_us,
        ),
    ]


async def build_report(
    database: Database,
    retention: RetentionSettings,
    tenant: str | None,
    *,
    start_us: int,
    end_us: int,
    now_us: int,
) -> ComplianceData:
    """Gather every section for [start_us, end_us) and `tenant` (None = all tenants)."""
    report = ComplianceData(start_us, end_us, now_us, tenant or "")
    async with database.engine.connect() as conn:
        report.access_summary = await _access(conn, tenant, start_us, end_us)
        report.feature_usage = await _features(conn, tenant, start_us, end_us)
        report.failed_authentications = await _failed(conn, tenant, start_us, end_us)
        report.admin_changes = await _admin(conn, tenant, start_us, end_us)
        report.retention = await _retention(conn, tenant, retention, now_us)
    for name in ("access_summary", "feature_usage", "failed_authentications", "admin_changes"):
        rows = getattr(report, name)
        if len(rows) > SECTION_LIMIT:
            setattr(report, name, rows[:SECTION_LIMIT])
            report.truncated = True
    return report
