"""The bookkeeping records (usage, audit) and the `Recorder` that takes them off the request path.

Contract of `Recorder`:
    * `usage(record)` and `audit(record)` never block on the database and never raise for storage
      trouble: the production recorder (store/outbox.py) appends the record to a durable local
      segment file and a batched writer moves it to the database later; a replica that dies after
      the call returned loses nothing (the segment is replayed at the next start).
    * Delivery is at-least-once; `record_id` / `event_id` make the database insert idempotent.
    * Records carry no secrets and no message contents.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

UsageStatus = Literal["completed", "failed", "cancelled", "interrupted"]

#: AuditOutcome enum values (homa.admin.v1.AuditOutcome), kept as ints in storage.
OUTCOME_SUCCESS = 1
OUTCOME_DENIED = 2
OUTCOME_FAILURE = 3


def new_id(prefix: str) -> str:
    """A unique, sortable-enough identifier such as `use_3f9a...` (uuid4 hex, 32 chars)."""
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One admitted call (one row of `usage_records`)."""

    time_us: int
    method: str  # feature as "service.Method", e.g. "chat.Complete"
    tenant: str
    status: UsageStatus
    request_id: str = ""
    api_key_id: str = ""
    principal: str = ""
    auth_method: str = ""
    model: str = ""  # "provider/model" as routed
    provider: str = ""
    attempts: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    audio_seconds: float = 0.0
    cost_micros: int = 0
    latency_ms: float = 0.0
    cache_hit: bool = False
    error_reason: str = ""
    record_id: str = field(default_factory=lambda: new_id("use"))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event before it is chained (sequence and hashes are assigned by the writer)."""

    time_us: int
    actor: str  # API key id, JWT/OAuth2 subject, or "system"
    action: str  # "api_key.create", "auth.failed", "chat.ChatService/Complete", ...
    outcome: int  # OUTCOME_*
    tenant: str = ""
    auth_method: str = ""
    resource: str = ""
    reason: str = ""  # ErrorInfo reason for denied/failed outcomes
    request_id: str = ""
    client_address: str = ""  # already masked
    details: dict[str, Any] = field(default_factory=dict)  # redacted, JSON-serialisable
    event_id: str = field(default_factory=lambda: new_id("evt"))


class Recorder(Protocol):
    """Takes bookkeeping records without blocking (see the module docstring)."""

    def usage(self, record: UsageRecord) -> None:
        """Record one admitted call."""

    def audit(self, record: AuditRecord) -> None:
        """Record one audited action."""


class MemoryRecorder:
    """Keeps records in lists: for tests of components that record, and for `storage: none` tools."""

    def __init__(self) -> None:
        self.usage_records: list[UsageRecord] = []
        self.audit_records: list[AuditRecord] = []

    def usage(self, record: UsageRecord) -> None:
        """Append to `usage_records`."""
        self.usage_records.append(record)

    def audit(self, record: AuditRecord) -> None:
        """Append to `audit_records`."""
        self.audit_records.append(record)
