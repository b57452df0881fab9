"""The dispatcher's side of reserve -> settle: settle a reservation with the call's usage record.

The usage meter (routing/metering.py) already turns every way a call can end (completed, failed,
cancelled, cut stream) into one `UsageRecord` with tokens and cost. `UsageCapture` sits between the
meter and the real recorder: it forwards every record unchanged and keeps the usage record, and
`settle_with_record` settles the call's reservation with it (input + output tokens, `cost_micros`).
No record (the meter failed) keeps the estimate charged: conservative, never an undercount.
"""

from __future__ import annotations

from homa_server.policy.reservation import Reservation
from homa_server.store.records import AuditRecord, Recorder, UsageRecord


class UsageCapture:
    """A `Recorder` that forwards to `inner` (if any) and remembers the last usage record."""

    def __init__(self, inner: Recorder | None) -> None:
        self.inner = inner
        self.record: UsageRecord | None = None

    def usage(self, record: UsageRecord) -> None:
        """Keep `record`, then forward it."""
        self.record = record
        if self.inner is not None:
            self.inner.usage(record)

    def audit(self, record: AuditRecord) -> None:
        """Forward `record`."""
        if self.inner is not None:
            self.inner.audit(record)


async def settle_with_record(reservation: Reservation, record: UsageRecord | None) -> None:
    """Settle `reservation` with the real usage of `record` (idempotent, never raises)."""
    if reservation.settled:
        return
    if record is None or reservation.estimate is None:
        estimate = reservation.estimate
        await reservation.settle(
            tokens=estimate.tokens if estimate else 0, cost_micros=estimate.cost_micros if estimate else 0
        )
        return
    await reservation.settle(
        tokens=record.input_tokens + record.output_tokens, cost_micros=record.cost_micros
    )
