"""The tamper-evident audit log: the outbox sink that chains events, listing and verification.

PROVISIONAL: `append_audit` is replaced by the chained writer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from homa_server.store.tables import audit_events

GENESIS_HASH = "0" * 64


async def append_audit(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Outbox sink: append audit events, assigning sequence numbers and chained hashes."""
    last = (
        await connection.execute(
            select(audit_events.c.sequence, audit_events.c.hash)
            .order_by(audit_events.c.sequence.desc())
            .limit(1)
        )
    ).first()
    sequence, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
    _ = func
    out = []
    for row in rows:
        sequence += 1
        canonical = json.dumps({**row, "sequence": sequence}, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256((prev + canonical).encode()).hexdigest()
        out.append({**row, "sequence": sequence, "prev_hash": prev, "hash": digest})
        prev = digest
    await connection.execute(audit_events.insert(), out)
