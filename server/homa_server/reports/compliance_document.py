"""The compliance report as a document: JSON, CSV or XML (see docs/audit.md, "Compliance report").

Contract: `render(report, fmt)` renders `reports.compliance.ComplianceData` with
`reports.formats.render_sections`: a first "report" section (period, generation time, tenant,
`truncated`) then access_summary, feature_usage, failed_authentications, admin_changes and retention,
always with the same columns. Times are RFC 3339 UTC text, `services` space-separated, audit `details`
compact JSON and outcomes their names (SUCCESS, DENIED, FAILURE).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

from homa_server.reports.compliance import ComplianceData
from homa_server.reports.formats import render_sections

OUTCOME_NAMES: Final = {0: "UNSPECIFIED", 1: "SUCCESS", 2: "DENIED", 3: "FAILURE"}


def iso(us: int | None) -> str:
    """RFC 3339 UTC text of epoch microseconds ("" for None)."""
    if us is None:
        return ""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return moment.isoformat().replace("+00:00", "Z")


_COLUMNS: Final = {
    "report": ("start_time", "end_time", "generate_time", "tenant", "truncated"),
    "access_summary": (
        "principal",
        "tenant",
        "auth_method",
        "requests",
        "denied_requests",
        "services",
        "first_access_time",
        "last_access_time",
    ),
    "feature_usage": ("feature", "requests", "errors", "total_tokens", "cost_micros"),
    "failed_authentications": (
        "principal_hint",
        "client_address",
        "reason",
        "count",
        "first_time",
        "last_time",
    ),
    "admin_changes": (
        "sequence",
        "event_id",
        "time",
        "actor",
        "tenant",
        "action",
        "resource",
        "outcome",
        "reason",
        "request_id",
        "client_address",
        "details",
    ),
    "retention": (
        "data_class",
        "retention_days",
        "oldest_record_time",
        "overdue_records",
        "encrypted_at_rest",
    ),
}


def _document_rows(report: ComplianceData) -> dict[str, list[dict[str, Any]]]:
    head = {
        "start_time": iso(report.start_us),
        "end_time": iso(report.end_us),
        "generate_time": iso(report.generate_us),
        "tenant": report.tenant,
        "truncated": report.truncated,
    }
    access = [
        {
            **row,
            "services": " ".join(row["services"]),
            "first_access_time": iso(row["first_access_us"]),
            "last_access_time": iso(row["last_access_us"]),
        }
        for row in report.access_summary
    ]
    failed = [
        {**row, "first_time": iso(row["first_us"]), "last_time": iso(row["last_us"])}
        for row in report.failed_authentications
    ]
    admin = [
        {
            **event,
            "time": iso(event["time_us"]),
            "outcome": OUTCOME_NAMES.get(event["outcome"], str(event["outcome"])),
            "details": json.dumps(event["details"], sort_keys=True, separators=(",", ":")),
        }
        for event in report.admin_changes
    ]
    retention = [{**row, "oldest_record_time": iso(row["oldest_us"])} for row in report.retention]
    return {
        "report": [head],
        "access_summary": access,
        "feature_usage": report.feature_usage,
        "failed_authentications": failed,
        "admin_changes": admin,
        "retention": retention,
    }


def render(report: ComplianceData, fmt: str | int) -> bytes:
    """The report as a JSON, CSV or XML document (see reports/formats.py `render_sections`).

    Raises:
        ValueError: unknown format.
    """
    rows = _document_rows(report)
    return render_sections(
        [(name, _COLUMNS[name], rows[name]) for name in _COLUMNS], fmt, root="compliance_report"
    )
