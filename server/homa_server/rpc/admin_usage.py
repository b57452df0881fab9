"""Usage RPCs of AdminService (GetUsage, ExportUsage).

Contract:
    * Validation (INVALID_ARGUMENT with one BadRequest field violation per problem): `start_time`
      required; `end_time` (default now) after `start_time`; `time_zone` a known IANA zone (default
      UTC); each `group_by` entry set, not repeated, and at most one of DAY/HOUR; `page_size` not
      negative; `page_token` one this query produced.
    * Tenant isolation: `tenant` goes through `auth/tenancy.visible_tenant` (own tenant unless the
      caller holds `tenants:all`; another tenant is PERMISSION_DENIED).
    * GetUsage: rows ordered by the group-by dimensions, `page_size` default 1000, at most 10000
      (larger values are lowered), opaque `next_page_token`; `totals` cover every page.
    * ExportUsage: the same rows, unpaged, rendered by reports/formats.py and streamed in chunks of
      at most 1 MiB; `mime_type` on every chunk, `file_name` ("usage-<start>-<end>.<ext>", local
      dates of the range) on the first. Columns: the group-by fields in order (`bucket_start_time`
      as ISO 8601 with the zone's offset), then the measures.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from google.protobuf import timestamp_pb2
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.auth.tenancy import current_principal, visible_tenant
from homa_server.errors import FieldViolation, invalid_argument
from homa_server.reports.formats import EXTENSIONS, MIME_TYPES, chunked, format_name, render_rows
from homa_server.store.database import now_us
from homa_server.store.usage import KEY_FIELDS, MEASURES, Dimension, UsageQuery, aggregate_usage

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE: Final = 1000
MAX_PAGE_SIZE: Final = 10000
CHUNK_BYTES: Final = 1024 * 1024
_DIMENSIONS: Final[dict[int, Dimension]] = {
    admin_pb2.USAGE_GROUP_BY_API_KEY: "api_key",
    admin_pb2.USAGE_GROUP_BY_TENANT: "tenant",
    admin_pb2.USAGE_GROUP_BY_MODEL: "model",
    admin_pb2.USAGE_GROUP_BY_PROVIDER: "provider",
    admin_pb2.USAGE_GROUP_BY_DAY: "day",
    admin_pb2.USAGE_GROUP_BY_HOUR: "hour",
}

UsageRequest = admin_pb2.GetUsageRequest | admin_pb2.ExportUsageRequest


def _us(stamp: timestamp_pb2.Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def _group_by(request: UsageRequest, problems: list[FieldViolation]) -> tuple[Dimension, ...]:
    seen: list[Dimension] = []
    for i, value in enumerate(request.group_by):
        dimension = _DIMENSIONS.get(value)
        if dimension is None:
            problems.append(FieldViolation(f"group_by[{i}]", "must be a known dimension, not UNSPECIFIED"))
        elif dimension in seen:
            problems.append(FieldViolation(f"group_by[{i}]", "repeated dimension"))
        elif dimension in ("day", "hour") and ({"day", "hour"} & set(seen)):
            problems.append(FieldViolation(f"group_by[{i}]", "DAY and HOUR cannot be combined"))
        else:
            seen.append(dimension)
    return tuple(seen)


def parse_query(request: UsageRequest) -> UsageQuery:
    """Validate a GetUsage/ExportUsage request and apply tenant isolation (see module docstring).

    Raises:
        GatewayError: INVALID_ARGUMENT with field violations; PERMISSION_DENIED for another tenant.
    """
    problems: list[FieldViolation] = []
    start = _us(request.start_time) if request.HasField("start_time") else None
    if start is None:
        problems.append(FieldViolation("start_time", "required"))
    end = _us(request.end_time) if request.HasField("end_time") else now_us()
    if start is not None and end <= start:
        problems.append(FieldViolation("end_time", "must be after start_time"))
    zone = request.time_zone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(FieldViolation("time_zone", "unknown IANA time zone"))
    group_by = _group_by(request, problems)
    if isinstance(request, admin_pb2.GetUsageRequest) and request.page_size < 0:
        problems.append(FieldViolation("page_size", "must not be negative"))
    if problems:
        raise invalid_argument("invalid usage query: " + "; ".join(p.field for p in problems), *problems)
    assert start is not None
    tenant = visible_tenant(current_principal(), request.tenant)
    return UsageQuery(
        start_us=start,
        end_us=end,
        tenant=tenant,
        api_key_id=request.api_key_id,
        model=request.model,
        provider=request.provider,
        group_by=group_by,
        time_zone=zone,
    )


def _fingerprint(query: UsageQuery) -> str:
    fields = [query.start_us, query.end_us, query.tenant, query.api_key_id, query.model, query.provider]
    data = orjson.dumps([*fields, list(query.group_by), query.time_zone])
    return hashlib.sha256(data).hexdigest()[:16]


def _offset(token: str, query: UsageQuery) -> int:
    if not token:
        return 0
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        offset = int(decoded["o"])
        if decoded["q"] != _fingerprint(query) or offset < 0:
            raise ValueError("other query")
    except (ValueError, KeyError, TypeError):
        raise invalid_argument(
            "invalid page_token", FieldViolation("page_token", "not a token of this query")
        ) from None
    return offset


def _token(offset: int, query: UsageQuery) -> str:
    raw = orjson.dumps({"o": offset, "q": _fingerprint(query)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _row_proto(row: dict[str, Any]) -> admin_pb2.UsageRow:
    message = admin_pb2.UsageRow(**{name: row[name] for name in MEASURES})
    for name in KEY_FIELDS.values():
        if name in row:
            setattr(message, name, row[name])
    if row.get("bucket_start_us") is not None:
        message.bucket_start_time.FromMicroseconds(row["bucket_start_us"])
    return message


def export_columns(query: UsageQuery) -> list[str]:
    """Document columns: group-by fields in order, then the measures."""
    groups = ["bucket_start_time" if d in ("day", "hour") else KEY_FIELDS[d] for d in query.group_by]
    return [*groups, *MEASURES]


def _export_row(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    out = dict(row)
    bucket = out.pop("bucket_start_us", None)
    if bucket is not None:
        out["bucket_start_time"] = dt.datetime.fromtimestamp(bucket / 1_000_000, tz=zone).isoformat()
    return out


def export_file_name(query: UsageQuery, extension: str) -> str:
    """`usage-<first day>-<last day>.<ext>` in the query's time zone (the end is exclusive)."""
    zone = ZoneInfo(query.time_zone)
    first = dt.datetime.fromtimestamp(query.start_us / 1_000_000, tz=zone).date()
    last = dt.datetime.fromtimestamp((query.end_us - 1) / 1_000_000, tz=zone).date()
    return f"usage-{first.isoformat()}-{last.isoformat()}.{extension}"


class UsageAdmin:
    """Part of a servicer (rpc/registration.py serves each RPC from the first part defining it)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def GetUsage(
        self, request: admin_pb2.GetUsageRequest, context: Context
    ) -> admin_pb2.GetUsageResponse:
        """Aggregated usage, paged (see the module docstring)."""
        query = parse_query(request)
        offset = _offset(request.page_token, query)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        result = await aggregate_usage(self._gateway.db, query)
        page = result.rows[offset : offset + size]
        response = admin_pb2.GetUsageResponse(
            rows=[_row_proto(row) for row in page], totals=_row_proto(result.totals)
        )
        if offset + size < len(result.rows):
            response.next_page_token = _token(offset + size, query)
        return response

    async def ExportUsage(
        self, request: admin_pb2.ExportUsageRequest, context: Context
    ) -> AsyncGenerator[admin_pb2.ExportUsageResponse, None]:
        """The usage rows as one JSON/CSV/XML document in chunks (see the module docstring)."""
        query = parse_query(request)
        fmt = format_name(request.format)
        result = await aggregate_usage(self._gateway.db, query)
        zone = ZoneInfo(query.time_zone)
        document = render_rows([_export_row(r, zone) for r in result.rows], export_columns(query), fmt)
        name = export_file_name(query, EXTENSIONS[fmt])
        for i, chunk in enumerate(chunked(document, CHUNK_BYTES)):
            yield admin_pb2.ExportUsageResponse(
                data=chunk, mime_type=MIME_TYPES[fmt], file_name=name if i == 0 else ""
            )
