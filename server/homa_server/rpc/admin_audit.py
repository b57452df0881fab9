"""Audit and compliance RPCs of AdminService (ListAuditEvents, VerifyAuditLog, GetComplianceReport).

Contract:
    * ListAuditEvents: a caller sees only events of its own tenant, unless it holds `tenants:all`
      (auth/tenancy.py); AIP-160 `filter` (store/audit_query.py), `start_time` inclusive,
      `end_time` exclusive, `order_by` "sequence desc" (default) or "sequence"; page size default
      100, at most 1000. The page token is bound to the query: reusing it with another filter,
      order or time range is INVALID_ARGUMENT (field `page_token`).
    * VerifyAuditLog: recomputes the whole chain (store/audit.py `verify`) over the requested range.
    * GetComplianceReport: `start_time` is required, `end_time` defaults to now and must be after
      `start_time`; `tenant` empty = every tenant the caller may see; the document is rendered in
      the requested format (reports/compliance.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.auth.tenancy import current_principal, visible_tenant
from homa_server.errors import invalid_field
from homa_server.reports import compliance, compliance_document
from homa_server.reports.formats import EXTENSIONS, MIME_TYPES, format_name
from homa_server.rpc.audit_protos import audit_event_proto, report_proto
from homa_server.store.audit import verify
from homa_server.store.audit_query import AuditQuery, list_events
from homa_server.store.database import now_us

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_ORDERS = {"": True, "sequence desc": True, "sequence": False, "sequence asc": False}
_STALE_PAGE = "not a token returned by this API for this query"


def _micros(message: Any, name: str) -> int | None:
    return int(getattr(message, name).ToMicroseconds()) if message.HasField(name) else None


def _query_digest(query: AuditQuery) -> str:
    key = [query.tenant, query.filter, query.start_us, query.end_us, query.descending]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _encode_token(query: AuditQuery, after: int) -> str:
    raw = json.dumps({"a": after, "q": _query_digest(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, query: AuditQuery) -> int | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = int(data["a"]), str(data["q"])
    except (ValueError, KeyError, TypeError):
        raise invalid_field("page_token", _STALE_PAGE) from None
    if digest != _query_digest(query) or after < 0:
        raise invalid_field("page_token", _STALE_PAGE)
    return after


def _list_query(request: admin_pb2.ListAuditEventsRequest, tenant: str | None) -> AuditQuery:
    if request.page_size < 0:
        raise invalid_field("page_size", "must not be negative")
    order = " ".join(request.order_by.lower().split())
    if order not in _ORDERS:
        raise invalid_field("order_by", 'must be "sequence desc" or "sequence"')
    start, end = _micros(request, "start_time"), _micros(request, "end_time")
    if start is not None and end is not None and end <= start:
        raise invalid_field("end_time", "must be after start_time")
    return AuditQuery(
        tenant=tenant,
        filter=request.filter,
        start_us=start,
        end_us=end,
        descending=_ORDERS[order],
        page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )


class AuditAdmin:
    """Part of a servicer (rpc/registration.py serves each RPC from the first part defining it)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: Context
    ) -> admin_pb2.ListAuditEventsResponse:
        """One page of audit events visible to the caller."""
        tenant = visible_tenant(current_principal())
        query = _list_query(request, tenant)
        after = _decode_token(request.page_token, query)
        page = dataclasses.replace(query, after_sequence=after)
        rows, next_after = await list_events(self._gateway.db, page)
        return admin_pb2.ListAuditEventsResponse(
            audit_events=[audit_event_proto(row) for row in rows],
            next_page_token=_encode_token(query, next_after) if next_after is not None else "",
        )

    async def VerifyAuditLog(
        self, request: admin_pb2.VerifyAuditLogRequest, context: Context
    ) -> admin_pb2.VerifyAuditLogResponse:
        """Recompute the hash chain over [start_sequence, end_sequence]."""
        start = request.start_sequence if request.HasField("start_sequence") else None
        end = request.end_sequence if request.HasField("end_sequence") else None
        if start is not None and start < 1:
            raise invalid_field("start_sequence", "must be at least 1")
        if end is not None and end < (start or 1):
            raise invalid_field("end_sequence", "must not be before start_sequence")
        result = await verify(self._gateway.db, start, end)
        response = admin_pb2.VerifyAuditLogResponse(
            ok=result.ok, checked_count=result.checked_count, detail=result.detail, last_hash=result.last_hash
        )
        if result.first_broken_sequence is not None:
            response.first_broken_sequence = result.first_broken_sequence
        return response

    async def GetComplianceReport(
        self, request: admin_pb2.GetComplianceReportRequest, context: Context
    ) -> admin_pb2.GetComplianceReportResponse:
        """Build the report for the period and render it in the requested format."""
        tenant = visible_tenant(current_principal(), request.tenant)
        start = _micros(request, "start_time")
        if start is None:
            raise invalid_field("start_time", "is required")
        now = now_us()
        end = _micros(request, "end_time") or now
        if end <= start:
            raise invalid_field("end_time", "must be after start_time")
        try:
            fmt = format_name(int(request.format))
        except ValueError:
            raise invalid_field("format", "unknown export format") from None
        settings = self._gateway.settings.retention
        report = await compliance.build_report(
            self._gateway.db, settings, tenant, start_us=start, end_us=end, now_us=now
        )
        day = compliance_document.iso(start)[:10]
        return admin_pb2.GetComplianceReportResponse(
            report=report_proto(report),
            document=compliance_document.render(report, fmt),
            mime_type=MIME_TYPES[fmt],
            file_name=f"compliance-{day}.{EXTENSIONS[fmt]}",
        )
