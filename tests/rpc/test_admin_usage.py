"""AdminService GetUsage / ExportUsage over gRPC: grouping, time zones, paging, validation, exports,
tenant isolation. Seeded rows, both engines."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa_server.app import start, stop
from homa_server.store.records import UsageRecord
from homa_server.store.usage import insert_usage
from tests.conftest import RunningServer, make_settings, status_details
from tests.jwt_gateway import bearer as admin_bearer
from tests.jwt_gateway import jwt_gateway

G = admin_pb2
MEASURES = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens",
            "cost_micros", "errors", "cache_hits")  # fmt: skip


def at(text: str) -> int:
    """UTC epoch µs of an ISO time such as "2026-10-25T00:30"."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000


def ts(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(at(text))
    return stamp


def record(when: str, **fields: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "tenant": "acme",
        "api_key_id": "key_a",
        "model": "mock/echo",
        "provider": "mock",
        "status": "completed",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_micros": 20,
    }
    return UsageRecord(time_us=at(when), method="chat.Complete", **{**base, **fields})


async def seed(server: RunningServer, *records: UsageRecord) -> None:
    async with server.gateway.db.begin() as connection:
        await insert_usage(connection, [dataclasses.asdict(r) for r in records])


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[RunningServer]:
    gateway, built = await start(make_settings(**{"storage.url": db_url}))
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def stub(server: RunningServer) -> admin_grpc.AdminServiceStub:
    return admin_grpc.AdminServiceStub(server.channel)


RANGE = {"start_time": ts("2026-10-01T00:00"), "end_time": ts("2026-12-01T00:00")}


async def test_totals_without_grouping(admin: RunningServer) -> None:
    await seed(
        admin,
        record("2026-11-01T10:00"),
        record("2026-11-02T10:00", status="failed", input_tokens=3, output_tokens=0, cost_micros=3),
        record("2026-11-03T10:00", cached_input_tokens=4, reasoning_tokens=2, cache_hit=True),
        record("2026-09-30T23:59"),  # outside the range
    )
    response = await stub(admin).GetUsage(G.GetUsageRequest(**RANGE))
    assert len(response.rows) == 1
    assert response.rows[0] == response.totals
    totals = response.totals
    assert (totals.requests, totals.input_tokens, totals.output_tokens) == (3, 23, 10)
    assert (totals.cached_input_tokens, totals.reasoning_tokens, totals.cost_micros) == (4, 2, 43)
    assert (totals.errors, totals.cache_hits) == (1, 1)
    assert not totals.model
    assert not totals.HasField("bucket_start_time")


async def test_group_by_model_and_filters(admin: RunningServer) -> None:
    await seed(
        admin,
        record("2026-11-01T10:00", model="mock/echo"),
        record("2026-11-01T11:00", model="mock/echo"),
        record("2026-11-01T12:00", model="openai/gpt-4o", provider="openai", api_key_id="key_b"),
    )
    by_model = await stub(admin).GetUsage(G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_MODEL]))
    assert [(r.model, r.requests) for r in by_model.rows] == [("mock/echo", 2), ("openai/gpt-4o", 1)]
    assert all(not r.tenant and not r.provider for r in by_model.rows)
    only_b = await stub(admin).GetUsage(G.GetUsageRequest(**RANGE, api_key_id="key_b"))
    assert only_b.totals.requests == 1
    only_mock = await stub(admin).GetUsage(G.GetUsageRequest(**RANGE, provider="mock", model="mock/echo"))
    assert only_mock.totals.requests == 2
    two = await stub(admin).GetUsage(
        G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_PROVIDER, G.USAGE_GROUP_BY_API_KEY])
    )
    assert [(r.provider, r.api_key_id, r.requests) for r in two.rows] == [
        ("mock", "key_a", 2),
        ("openai", "key_b", 1),
    ]


async def test_days_in_a_time_zone_across_the_dst_change(admin: RunningServer) -> None:
    # Paris leaves summer time on 2026-10-25 at 01:00 UTC.
    await seed(
        admin,
        record("2026-10-24T22:30"),  # 00:30 CEST on the 25th
        record("2026-10-25T21:30"),  # 22:30 CET on the 25th
        record("2026-10-25T23:10"),  # 00:10 CET on the 26th
    )
    paris = await stub(admin).GetUsage(
        G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_DAY], time_zone="Europe/Paris")
    )
    assert [(r.bucket_start_time.ToMicroseconds(), r.requests) for r in paris.rows] == [
        (at("2026-10-24T22:00"), 2),  # local midnight of the 25th, still CEST (+2)
        (at("2026-10-25T23:00"), 1),  # local midnight of the 26th, CET (+1)
    ]
    utc = await stub(admin).GetUsage(G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_DAY]))
    assert [(r.bucket_start_time.ToMicroseconds(), r.requests) for r in utc.rows] == [
        (at("2026-10-24T00:00"), 1),
        (at("2026-10-25T00:00"), 2),
    ]


async def test_hours_with_half_hour_offsets_and_the_repeated_hour(admin: RunningServer) -> None:
    await seed(
        admin,
        record("2026-11-01T00:20"),  # Kolkata 05:50
        record("2026-11-01T00:40"),  # Kolkata 06:10
        record("2026-10-25T00:30"),  # Paris 02:30 CEST
        record("2026-10-25T01:30"),  # Paris 02:30 CET (the repeated hour)
    )
    kolkata = await stub(admin).GetUsage(
        G.GetUsageRequest(
            start_time=ts("2026-10-31T12:00"),
            end_time=ts("2026-11-02T00:00"),
            group_by=[G.USAGE_GROUP_BY_HOUR],
            time_zone="Asia/Kolkata",
        )
    )
    assert [r.bucket_start_time.ToMicroseconds() for r in kolkata.rows] == [
        at("2026-10-31T23:30"),
        at("2026-11-01T00:30"),
    ]
    paris = await stub(admin).GetUsage(
        G.GetUsageRequest(
            start_time=ts("2026-10-24T12:00"),
            end_time=ts("2026-10-26T00:00"),
            group_by=[G.USAGE_GROUP_BY_HOUR],
            time_zone="Europe/Paris",
        )
    )
    assert [r.bucket_start_time.ToMicroseconds() for r in paris.rows] == [
        at("2026-10-25T00:00"),
        at("2026-10-25T01:00"),
    ]


async def test_paging_keeps_totals_and_binds_the_token_to_the_query(admin: RunningServer) -> None:
    await seed(admin, *(record(f"2026-11-0{d}T10:00", model=f"mock/m{d}") for d in range(1, 6)))
    request = G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_MODEL], page_size=2)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        request.page_token = token
        page = await stub(admin).GetUsage(request)
        pages += 1
        assert page.totals.requests == 5
        seen.extend(r.model for r in page.rows)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [f"mock/m{d}" for d in range(1, 6)]
    first = await stub(admin).GetUsage(
        request.__class__(**RANGE, group_by=[G.USAGE_GROUP_BY_MODEL], page_size=2)
    )
    other = G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_TENANT], page_token=first.next_page_token)
    for bad in (other, G.GetUsageRequest(**RANGE, page_token="garbage")):
        with pytest.raises(aio.AioRpcError) as info:
            await stub(admin).GetUsage(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == ["page_token"]


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({}, ["start_time"]),
        ({"start_time": ts("2026-11-02T00:00"), "end_time": ts("2026-11-01T00:00")}, ["end_time"]),
        ({**RANGE, "time_zone": "Mars/Olympus"}, ["time_zone"]),
        ({**RANGE, "group_by": [G.USAGE_GROUP_BY_UNSPECIFIED]}, ["group_by[0]"]),
        ({**RANGE, "group_by": [G.USAGE_GROUP_BY_MODEL, G.USAGE_GROUP_BY_MODEL]}, ["group_by[1]"]),
        ({**RANGE, "group_by": [G.USAGE_GROUP_BY_DAY, G.USAGE_GROUP_BY_HOUR]}, ["group_by[1]"]),
        ({"time_zone": "../etc/passwd", "page_size": -1}, ["start_time", "time_zone", "page_size"]),
    ],
)
async def test_validation(server: RunningServer, request_fields: dict[str, Any], fields: list[str]) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await stub(server).GetUsage(G.GetUsageRequest(**request_fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == fields
    export = G.ExportUsageRequest(**{k: v for k, v in request_fields.items() if k != "page_size"})
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub(server).ExportUsage(export):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _as_dict(row: admin_pb2.UsageRow) -> dict[str, Any]:
    out: dict[str, Any] = {"model": row.model, **{m: getattr(row, m) for m in MEASURES}}
    when = dt.datetime.fromtimestamp(row.bucket_start_time.ToMicroseconds() / 1e6, tz=dt.UTC)
    out["bucket_start_time"] = when
    return out


def _parse(fmt: int, data: bytes) -> list[dict[str, Any]]:
    if fmt == G.EXPORT_FORMAT_JSON:
        rows: list[dict[str, Any]] = json.loads(data)
    elif fmt == G.EXPORT_FORMAT_CSV:
        rows = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    else:
        root = ET.fromstring(data)
        assert root.tag == "usage"
        rows = [{child.tag: child.text or "" for child in row} for row in root.findall("row")]
    for row in rows:
        row["bucket_start_time"] = dt.datetime.fromisoformat(row["bucket_start_time"])
        for name in MEASURES:
            row[name] = int(row[name])
    return rows


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        (G.EXPORT_FORMAT_JSON, "application/json"),
        (G.EXPORT_FORMAT_CSV, "text/csv"),
        (G.EXPORT_FORMAT_XML, "application/xml"),
    ],
)
async def test_export_parses_back_to_the_get_usage_rows(admin: RunningServer, fmt: int, mime: str) -> None:
    await seed(
        admin,
        record("2026-11-01T10:00", model="mock/echo"),
        record("2026-11-01T23:30", model="a&b/<x>", provider="a&b"),
        record("2026-11-02T10:00", model='quote"d,model', status="cancelled"),
    )
    fields = {
        "start_time": ts("2026-11-01T00:00"),
        "end_time": ts("2026-11-23T00:00"),
        "group_by": [G.USAGE_GROUP_BY_DAY, G.USAGE_GROUP_BY_MODEL],
        "time_zone": "Europe/Paris",
    }
    expected = [_as_dict(r) for r in (await stub(admin).GetUsage(G.GetUsageRequest(**fields))).rows]
    chunks = [c async for c in stub(admin).ExportUsage(G.ExportUsageRequest(**fields, format=fmt))]
    assert all(c.mime_type == mime for c in chunks)
    extension = {G.EXPORT_FORMAT_JSON: "json", G.EXPORT_FORMAT_CSV: "csv", G.EXPORT_FORMAT_XML: "xml"}[fmt]
    assert chunks[0].file_name == f"usage-2026-11-01-2026-11-23.{extension}"
    assert all(not c.file_name for c in chunks[1:])
    assert _parse(fmt, b"".join(c.data for c in chunks)) == expected
    assert len(expected) == 3


async def test_large_export_is_chunked(server: RunningServer) -> None:
    many = [record("2026-11-01T10:00", model=f"mock/{'m' * 200}{i}") for i in range(6000)]
    await seed(server, *many)
    request = G.ExportUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_MODEL], format=G.EXPORT_FORMAT_CSV)
    chunks = [c async for c in stub(server).ExportUsage(request)]
    assert len(chunks) >= 2
    assert all(len(c.data) <= 1024 * 1024 for c in chunks)
    rows = list(csv.DictReader(io.StringIO(b"".join(c.data for c in chunks).decode(), newline="")))
    assert len(rows) == 6000


# --- tenant isolation --------------------------------------------------------------------------


@pytest.fixture
async def jwt_admin(db_url: str) -> AsyncIterator[RunningServer]:
    async with jwt_gateway(**{"storage.url": db_url}) as running:
        yield running


def bearer(subject: str, tenant: str) -> tuple[tuple[str, str]]:
    return admin_bearer("admin:read", tenant, subject)


async def test_a_tenant_sees_only_its_own_usage(jwt_admin: RunningServer) -> None:
    await seed(
        jwt_admin,
        record("2026-11-01T10:00", tenant="acme"),
        record("2026-11-01T10:00", tenant="globex"),
        record("2026-11-01T11:00", tenant="globex"),
    )
    alice = bearer("alice", "acme")
    mine = await stub(jwt_admin).GetUsage(
        G.GetUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_TENANT]), metadata=alice
    )
    assert [(r.tenant, r.requests) for r in mine.rows] == [("acme", 1)]
    assert mine.totals.requests == 1
    same = await stub(jwt_admin).GetUsage(G.GetUsageRequest(**RANGE, tenant="acme"), metadata=alice)
    assert same.totals.requests == 1
    exported = [
        c
        async for c in stub(jwt_admin).ExportUsage(
            G.ExportUsageRequest(**RANGE, group_by=[G.USAGE_GROUP_BY_TENANT]), metadata=alice
        )
    ]
    assert [r["tenant"] for r in json.loads(b"".join(c.data for c in exported))] == ["acme"]
    with pytest.raises(aio.AioRpcError) as info:
        await stub(jwt_admin).GetUsage(G.GetUsageRequest(**RANGE, tenant="globex"), metadata=alice)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in stub(jwt_admin).ExportUsage(
            G.ExportUsageRequest(**RANGE, tenant="globex"), metadata=alice
        ):
            pass
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
