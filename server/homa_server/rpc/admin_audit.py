"""Audit and compliance RPCs of AdminService (ListAuditEvents, VerifyAuditLog, GetComplianceReport).

PROVISIONAL: no RPC is defined yet, so each answers UNIMPLEMENTED through rpc/registration.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homa_server.app import Gateway


class AuditAdmin:
    """Part of a servicer (rpc/registration.py serves each RPC from the first part defining it)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
