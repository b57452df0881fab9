"""GetComplianceReport on both engines: numbers match the seeded events, all three formats parse back."""

from __future__ import annotations

import csv
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
from homa_server.app import Gateway, start, stop
from homa_server.store.records import AuditRecord, UsageRecord
from tests.conftest import make_settings

START = 1_600_000_000_000_000
DAY = 86_400_000_000
END = START + DAY


def _ts(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def _audit(t: int, actor: str, action: str, outcome: int = 1, **extra: Any) -> AuditRecord:
    return AuditRecord(time_us=START + t, actor=actor, action=action, outcome=outcome, **extra)


def _seed(gateway: Gateway) -> None:
    rec = gateway.recorder
    chat, embed = "chat.ChatService/Complete", "embedding.EmbeddingService/Embed"
    acme = {"tenant": "acme", "auth_method": "api_key"}
    for t in range(3):
        rec.audit(_audit(10 + t, "key_a", chat, **acme))
    rec.audit(_audit(20, "key_a", chat, 2, reason="PERMISSION_DENIED", **acme))
    rec.audit(_audit(21, "key_a", embed, **acme))
    rec.audit(_audit(22, "key_a", embed, **acme))
    rec.audit(_audit(23, "key_a", chat, 3, reason="UPSTREAM_UNAVAILABLE", **acme))
    rec.audit(_audit(30, "user-9", "admin.AdminService/ListModels", tenant="globex", auth_method="jwt"))
    for t in (40, 41):
        rec.audit(
            _audit(
                t,
                "",
                "auth.failed",
                2,
                reason="INVALID_CREDENTIALS",
                client_address="10.0.0.0/24",
                details={"principal_hint": "homa_sk_abcd"},
            )
        )
    rec.audit(_audit(42, "", "auth.failed", 2, reason="CREDENTIALS_REQUIRED", client_address="10.0.1.0/24"))
    rec.audit(_audit(50, "key_a", "api_key.create", resource="apiKeys/key_x", details={"name": "ci"}, **acme))
    rec.audit(_audit(51, "system", "retention.purge", details={"usage": 3}))
    rec.audit(_audit(-5, "key_a", chat, **acme))  # before the period
    rec.audit(_audit(DAY, "key_a", "api_key.revoke", **acme))  # end is exclusive
    usage = [
        ("chat.Complete", "acme", "completed", 10, 5, 100),
        ("chat.Complete", "acme", "completed", 20, 5, 200),
        ("chat.Complete", "acme", "failed", 0, 0, 0),
        ("embedding.Embed", "globex", "completed", 7, 0, 30),
    ]
    for i, (method, tenant, status, tokens_in, tokens_out, cost) in enumerate(usage):
        rec.usage(
            UsageRecord(
                time_us=START + 100 + i,
                method=method,
                tenant=tenant,
                status=status,  # type: ignore[arg-type]
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_micros=cost,
            )
        )
    rec.usage(UsageRecord(time_us=START - 1, method="chat.Complete", tenant="acme", status="completed"))


@pytest.fixture
async def report_server(db_url: str) -> AsyncIterator[tuple[Gateway, admin_grpc.AdminServiceStub]]:
    settings = make_settings(**{"storage.url": db_url, "retention.usage_days": 30})
    gateway, built = await start(settings)
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        assert gateway.retention is not None
        await gateway.retention.aclose()  # the seeded rows are years old: keep them for the report
        _seed(gateway)
        assert gateway.outbox is not None
        await gateway.outbox.flush()
        yield gateway, admin_grpc.AdminServiceStub(channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


async def _report(
    stub: admin_grpc.AdminServiceStub, fmt: int, tenant: str = ""
) -> admin_pb2.GetComplianceReportResponse:
    request = admin_pb2.GetComplianceReportRequest(
        start_time=_ts(START), end_time=_ts(END), format=fmt, tenant=tenant
    )
    return await stub.GetComplianceReport(request)


async def test_report_sections_match_the_seeded_activity(report_server: tuple[Gateway, Any]) -> None:
    _, stub = report_server
    report = (await _report(stub, admin_pb2.EXPORT_FORMAT_JSON)).report
    access = {(a.principal, a.tenant, a.auth_method): a for a in report.access_summary}
    assert set(access) == {("key_a", "acme", "api_key"), ("user-9", "globex", "jwt")}
    key_a = access["key_a", "acme", "api_key"]
    assert (key_a.requests, key_a.denied_requests, list(key_a.services)) == (5, 1, ["chat", "embedding"])
    assert key_a.first_access_time.ToMicroseconds() == START + 10
    assert key_a.last_access_time.ToMicroseconds() == START + 23
    features = {
        f.feature: (f.requests, f.errors, f.total_tokens, f.cost_micros) for f in report.feature_usage
    }
    assert features == {"chat.Complete": (3, 1, 40, 300), "embedding.Embed": (1, 0, 7, 30)}
    failed = {(f.principal_hint, f.client_address, f.reason): f.count for f in report.failed_authentications}
    assert failed == {
        ("homa_sk_abcd", "10.0.0.0/24", "INVALID_CREDENTIALS"): 2,
        ("", "10.0.1.0/24", "CREDENTIALS_REQUIRED"): 1,
    }
    assert [e.action for e in report.admin_changes] == ["api_key.create", "retention.purge"]
    assert report.admin_changes[0].details["name"] == "ci"
    retention = {r.data_class: r for r in report.retention}
    assert retention["usage"].retention.seconds == 30 * 86_400
    assert retention["usage"].overdue_records == 5
    assert retention["usage"].oldest_record_time.ToMicroseconds() == START - 1
    assert not retention["audit"].HasField("retention")
    assert retention["audit"].overdue_records == 0
    assert retention["conversations"].encrypted_at_rest
    assert not retention["audit"].encrypted_at_rest
    assert not report.truncated


async def test_tenant_report_sees_only_that_tenant(report_server: tuple[Gateway, Any]) -> None:
    _, stub = report_server
    report = (await _report(stub, admin_pb2.EXPORT_FORMAT_JSON, "acme")).report
    assert report.tenant == "acme"
    assert [a.principal for a in report.access_summary] == ["key_a"]
    assert [f.feature for f in report.feature_usage] == ["chat.Complete"]
    assert list(report.failed_authentications) == []
    assert [e.action for e in report.admin_changes] == ["api_key.create"]


async def test_documents_parse_back_in_all_formats(report_server: tuple[Gateway, Any]) -> None:
    _, stub = report_server
    as_json = await _report(stub, admin_pb2.EXPORT_FORMAT_JSON)
    assert as_json.mime_type == "application/json"
    assert as_json.file_name == "compliance-2020-09-13.json"
    doc = json.loads(as_json.document)
    assert doc["report"][0]["start_time"] == "2020-09-13T12:26:40Z"
    assert {r["feature"]: r["cost_micros"] for r in doc["feature_usage"]} == {
        "chat.Complete": 300,
        "embedding.Embed": 30,
    }
    assert sum(r["count"] for r in doc["failed_authentications"]) == 3
    assert [r["action"] for r in doc["admin_changes"]] == ["api_key.create", "retention.purge"]

    as_csv = await _report(stub, admin_pb2.EXPORT_FORMAT_CSV)
    assert as_csv.mime_type == "text/csv"
    tables: dict[str, list[dict[str, str]]] = {}
    for block in as_csv.document.decode().split("\r\n\r\n"):
        title, _, body = block.partition("\r\n")
        assert title.startswith("# ")
        tables[title[2:]] = list(csv.DictReader(io.StringIO(body)))
    assert list(tables) == [
        "report",
        "access_summary",
        "feature_usage",
        "failed_authentications",
        "admin_changes",
        "retention",
    ]
    key_a = next(r for r in tables["access_summary"] if r["principal"] == "key_a")
    assert (key_a["requests"], key_a["denied_requests"], key_a["services"]) == ("5", "1", "chat embedding")
    assert json.loads(tables["admin_changes"][0]["details"]) == {"name": "ci"}
    assert {r["data_class"]: r["overdue_records"] for r in tables["retention"]}["usage"] == "5"

    as_xml = await _report(stub, admin_pb2.EXPORT_FORMAT_XML)
    assert as_xml.mime_type == "application/xml"
    root = ET.fromstring(as_xml.document)
    assert root.tag == "compliance_report"
    rows = root.find("feature_usage")
    assert rows is not None
    totals = {row.findtext("feature"): row.findtext("total_tokens") for row in rows}
    assert totals == {"chat.Complete": "40", "embedding.Embed": "7"}
    assert root.findtext("report/row/truncated") == "false"


async def test_report_request_errors(report_server: tuple[Gateway, Any]) -> None:
    _, stub = report_server
    for request in (
        admin_pb2.GetComplianceReportRequest(),
        admin_pb2.GetComplianceReportRequest(start_time=_ts(END), end_time=_ts(START)),
        admin_pb2.GetComplianceReportRequest(start_time=_ts(START), format=9),  # type: ignore[arg-type]
    ):
        with pytest.raises(aio.AioRpcError) as error:
            await stub.GetComplianceReport(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
