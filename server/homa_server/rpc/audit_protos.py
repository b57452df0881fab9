"""Protobuf views of the audit log and the compliance report (homa.admin.v1 messages).

Contract: `audit_event_proto` turns a stored `audit_events` row into `AuditEvent`; the stored
`reason` and `auth_method` (no proto fields of their own) are added to `details` under those keys
when not empty. `report_proto` turns `reports.compliance.ComplianceData` into `ComplianceReport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.reports.compliance import ComplianceData


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp from epoch microseconds."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def audit_event_proto(event: Mapping[str, Any]) -> admin_pb2.AuditEvent:
    """A stored audit event as `AuditEvent`; the stored `reason` and `auth_method` (no proto
    fields of their own) are added to `details` under those keys when not empty."""
    details = struct_pb2.Struct()
    extra = {k: event[k] for k in ("reason", "auth_method") if event.get(k)}
    details.update({**(event.get("details") or {}), **extra})
    return admin_pb2.AuditEvent(
        event_id=event["event_id"],
        sequence=event["sequence"],
        time=timestamp(event["time_us"]),
        actor=event["actor"],
        tenant=event["tenant"],
        action=event["action"],
        resource=event["resource"],
        outcome=event["outcome"],
        request_id=event["request_id"],
        client_address=event["client_address"],
        details=details,
        hash=event["hash"],
    )


def report_proto(report: ComplianceData) -> admin_pb2.ComplianceReport:
    """The structured `ComplianceReport`."""
    out = admin_pb2.ComplianceReport(
        start_time=timestamp(report.start_us),
        end_time=timestamp(report.end_us),
        generate_time=timestamp(report.generate_us),
        tenant=report.tenant,
        truncated=report.truncated,
    )
    for row in report.access_summary:
        out.access_summary.add(
            principal=row["principal"],
            tenant=row["tenant"],
            auth_method=row["auth_method"],
            requests=row["requests"],
            denied_requests=row["denied_requests"],
            services=row["services"],
            first_access_time=timestamp(row["first_access_us"]),
            last_access_time=timestamp(row["last_access_us"]),
        )
    for row in report.feature_usage:
        out.feature_usage.add(**row)
    for row in report.failed_authentications:
        out.failed_authentications.add(
            principal_hint=row["principal_hint"],
            client_address=row["client_address"],
            reason=row["reason"],
            count=row["count"],
            first_time=timestamp(row["first_us"]),
            last_time=timestamp(row["last_us"]),
        )
    out.admin_changes.extend(audit_event_proto(event) for event in report.admin_changes)
    for row in report.retention:
        status = out.retention.add(
            data_class=row["data_class"],
            overdue_records=row["overdue_records"],
            encrypted_at_rest=row["encrypted_at_rest"],
        )
        if row["retention_days"] is not None:
            status.retention.CopyFrom(duration_pb2.Duration(seconds=row["retention_days"] * 86_400))
        if row["oldest_us"] is not None:
            status.oldest_record_time.CopyFrom(timestamp(row["oldest_us"]))
    return out
