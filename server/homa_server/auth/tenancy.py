"""Tenant isolation: which tenant's data the current caller may read or write.

Contract:
    * Every stored resource belongs to one tenant; repositories always filter by tenant.
    * A caller sees only its own tenant, unless it holds `CROSS_TENANT_SCOPE` (`tenants:all`),
      which no RPC requires and only operators are given (the anonymous development principal of
      `auth.mode: none` has it).
    * Asking for another tenant without that scope is PERMISSION_DENIED with the generic message
      (never "that tenant exists").
"""

from __future__ import annotations

from typing import Final

from homa_server.auth.principal import Principal, credentials_required, permission_denied
from homa_server.observability.call_state import current_call

#: Scope letting a principal read and manage every tenant's data.
CROSS_TENANT_SCOPE: Final = "tenants:all"


def current_principal() -> Principal:
    """The authenticated caller of the current RPC.

    Raises:
        GatewayError: UNAUTHENTICATED when the call carries no Principal (an open method, or a
            component used outside an RPC).
    """
    state = current_call.get()
    if state is None or state.principal is None:
        raise credentials_required()
    return state.principal


def visible_tenant(principal: Principal, requested: str = "") -> str | None:
    """The tenant to filter reads by: `requested` or the caller's own; None means every tenant
    (only for a cross-tenant caller that asked for none).

    Raises:
        GatewayError: PERMISSION_DENIED for another tenant without `CROSS_TENANT_SCOPE`.
    """
    if principal.has_scope(CROSS_TENANT_SCOPE):
        return requested or None
    if requested and requested != principal.tenant:
        raise permission_denied()
    return principal.tenant


def owning_tenant(principal: Principal, requested: str = "") -> str:
    """The tenant a new resource is created in: `requested` (cross-tenant callers) or the caller's.

    Raises:
        GatewayError: PERMISSION_DENIED for another tenant without `CROSS_TENANT_SCOPE`.
    """
    if requested and requested != principal.tenant:
        if not principal.has_scope(CROSS_TENANT_SCOPE):
            raise permission_denied()
        return requested
    return principal.tenant


def may_access(principal: Principal, tenant: str) -> bool:
    """Whether the caller may touch a resource of `tenant` (answer NOT_FOUND when not, so that
    resources of other tenants are indistinguishable from missing ones)."""
    return tenant == principal.tenant or principal.has_scope(CROSS_TENANT_SCOPE)
