"""Usage calls of `client.admin` (GetUsage, ExportUsage).

Mixed into `AsyncAdmin` / `Admin` (homa_client/admin.py); same keywords (`timeout`, `request_id`,
`metadata`) and typed errors as the other admin calls. `get_usage` follows `next_page_token` to the
last page and returns every row with the totals; `export_usage` joins the streamed chunks into one
document. Needs the `admin:read` scope; asking for another tenant is PermissionDeniedError.
`group_by` takes dimension names ("api_key", "tenant", "model", "provider", "day", "hour") or
`UsageGroupBy` values; `format` takes "json", "csv", "xml" or an `ExportFormat` value.
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline, propagated to the gateway (see unary.py)

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import grpc

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa_client.errors import InternalError, from_rpc_error
from homa_client.invocation import CallOptions, CallSettings, MetadataInput
from homa_client.unary import call_async, call_sync

_DIMENSIONS = {
    "api_key": admin_pb2.USAGE_GROUP_BY_API_KEY,
    "key": admin_pb2.USAGE_GROUP_BY_API_KEY,
    "tenant": admin_pb2.USAGE_GROUP_BY_TENANT,
    "model": admin_pb2.USAGE_GROUP_BY_MODEL,
    "provider": admin_pb2.USAGE_GROUP_BY_PROVIDER,
    "day": admin_pb2.USAGE_GROUP_BY_DAY,
    "hour": admin_pb2.USAGE_GROUP_BY_HOUR,
}
_FORMATS = {
    "json": admin_pb2.EXPORT_FORMAT_JSON,
    "csv": admin_pb2.EXPORT_FORMAT_CSV,
    "xml": admin_pb2.EXPORT_FORMAT_XML,
}

GroupBy = Sequence["str | admin_pb2.UsageGroupBy.ValueType"]


class UsageExport(NamedTuple):
    """A whole exported document."""

    data: bytes
    mime_type: str
    file_name: str


class UsageFilter(NamedTuple):
    """The query shared by `get_usage` and `export_usage` (times naive = UTC; `end` None = now)."""

    start: datetime
    end: datetime | None = None
    group_by: GroupBy = ()
    tenant: str = ""
    api_key_id: str = ""
    model: str = ""
    provider: str = ""
    time_zone: str = ""

    def fields(self) -> dict[str, object]:
        """Request fields common to GetUsageRequest and ExportUsageRequest."""
        fields: dict[str, object] = {
            "tenant": self.tenant,
            "api_key_id": self.api_key_id,
            "model": self.model,
            "provider": self.provider,
            "time_zone": self.time_zone,
            "group_by": [_DIMENSIONS[g] if isinstance(g, str) else g for g in self.group_by],
        }
        return fields

    def stamp(self, request: admin_pb2.GetUsageRequest | admin_pb2.ExportUsageRequest) -> None:
        """Set the time range of `request`."""
        request.start_time.FromDatetime(_utc(self.start))
        if self.end is not None:
            request.end_time.FromDatetime(_utc(self.end))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def usage_request(query: UsageFilter, page_size: int = 0) -> admin_pb2.GetUsageRequest:
    """The GetUsageRequest of `query`."""
    request = admin_pb2.GetUsageRequest(page_size=page_size, **query.fields())  # type: ignore[arg-type]
    query.stamp(request)
    return request


def export_request(query: UsageFilter, format: str | int = "json") -> admin_pb2.ExportUsageRequest:
    """The ExportUsageRequest of `query`."""
    value = _FORMATS[format.lower()] if isinstance(format, str) else format
    request = admin_pb2.ExportUsageRequest(format=value, **query.fields())  # type: ignore[arg-type]
    query.stamp(request)
    return request


def _next(request: admin_pb2.GetUsageRequest, token: str, seen: set[str]) -> bool:
    if not token:
        return False
    if token in seen:
        raise InternalError(
            "the gateway repeated a page token", code=grpc.StatusCode.INTERNAL, reason="PAGINATION_LOOP"
        )
    seen.add(token)
    request.page_token = token
    return True


def _join(chunks: Sequence[admin_pb2.ExportUsageResponse]) -> UsageExport:
    mime = chunks[0].mime_type if chunks else ""
    name = chunks[0].file_name if chunks else ""
    return UsageExport(b"".join(c.data for c in chunks), mime, name)


class AsyncUsageCalls:
    """Usage methods of `AsyncAdmin`."""

    _settings: CallSettings

    @property
    def _stub(self) -> admin_grpc.AdminServiceAsyncStub:
        raise NotImplementedError

    async def get_usage(
        self,
        query: UsageFilter,
        *,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.GetUsageResponse:
        """Aggregated usage: every page's rows and the totals (no `next_page_token`)."""
        request = usage_request(query, page_size)
        options = CallOptions(timeout, request_id, metadata)
        out = admin_pb2.GetUsageResponse()
        seen: set[str] = set()
        while True:
            page = await call_async(self._settings, self._stub.GetUsage, request, options)
            out.rows.extend(page.rows)
            out.totals.CopyFrom(page.totals)
            if not _next(request, page.next_page_token, seen):
                return out

    async def export_usage(
        self,
        query: UsageFilter,
        format: str | int = "json",
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> UsageExport:
        """The usage rows as one JSON, CSV or XML document."""
        prepared = await self._settings.prepare_async(CallOptions(timeout, request_id, metadata))
        call = self._stub.ExportUsage(
            export_request(query, format), timeout=prepared.timeout, metadata=prepared.metadata
        )
        try:
            chunks = [chunk async for chunk in call]
        except grpc.RpcError as exc:
            self._settings.record_error(exc, prepared.request_id)
            raise from_rpc_error(exc, prepared.request_id) from exc
        return _join(chunks)


class UsageCalls:
    """Usage methods of `Admin`; same as `AsyncUsageCalls`."""

    _settings: CallSettings
    _stub: admin_grpc.AdminServiceStub

    def get_usage(
        self,
        query: UsageFilter,
        *,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.GetUsageResponse:
        """Aggregated usage: every page's rows and the totals (no `next_page_token`)."""
        request = usage_request(query, page_size)
        options = CallOptions(timeout, request_id, metadata)
        out = admin_pb2.GetUsageResponse()
        seen: set[str] = set()
        while True:
            page = call_sync(self._settings, self._stub.GetUsage, request, options)
            out.rows.extend(page.rows)
            out.totals.CopyFrom(page.totals)
            if not _next(request, page.next_page_token, seen):
                return out

    def export_usage(
        self,
        query: UsageFilter,
        format: str | int = "json",
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> UsageExport:
        """The usage rows as one JSON, CSV or XML document."""
        prepared = self._settings.prepare_sync(CallOptions(timeout, request_id, metadata))
        try:
            chunks = list(
                self._stub.ExportUsage(
                    export_request(query, format), timeout=prepared.timeout, metadata=prepared.metadata
                )
            )
        except grpc.RpcError as exc:
            self._settings.record_error(exc, prepared.request_id)
            raise from_rpc_error(exc, prepared.request_id) from exc
        return _join(chunks)
