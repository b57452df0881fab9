"""AdminService.InvalidateCache: remove response-cache entries by key, model, tenant or all.

Contract:
    * Exactly one target; `all` must be true; empty strings are INVALID_ARGUMENT (field `target`
      or the target's own name).
    * Tenant isolation (auth/tenancy.py): a caller without `tenants:all` only ever touches its own
      tenant's entries: `tenant` naming another tenant is PERMISSION_DENIED; `cache_key`, `model` and
      `all` are confined to the caller's tenant (another tenant's key simply removes nothing).
      A cross-tenant caller's `cache_key`, `model` and `all` span every tenant.
    * `model` accepts what a request accepts (alias, "provider/model" or a bare model name) and is
      normalised the way the dispatcher keys entries (policy/cache/models.py); an unknown name is
      used as is.
    * Memcached invalidates model/tenant/all by generation: `removed_count` 0 and `exact` false.
    * With the cache disabled nothing is removed (`removed_count` 0, `exact` true).
    * Every invalidation is audited as `cache.invalidate` (target kind and count, never the key's
      request contents) when the gateway has a recorder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.auth.tenancy import current_principal, visible_tenant
from homa_server.errors import invalid_field
from homa_server.observability.call_state import current_call
from homa_server.policy.cache.backends.base import Invalidation
from homa_server.policy.cache.models import cache_model
from homa_server.policy.cache.service import ResponseCache
from homa_server.store.database import now_us
from homa_server.store.records import OUTCOME_SUCCESS, AuditRecord

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]


class CacheAdmin:
    """Part of the AdminService servicer: InvalidateCache."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def _cache(self) -> ResponseCache | None:
        cache: ResponseCache | None = getattr(self._gateway, "cache", None)
        return cache

    def _target(self, request: admin_pb2.InvalidateCacheRequest) -> Invalidation:
        principal = current_principal()
        scope = visible_tenant(principal)  # None = every tenant (cross-tenant callers only)
        which = request.WhichOneof("target")
        if which == "cache_key":
            if not request.cache_key:
                raise invalid_field("cache_key", "must not be empty")
            return Invalidation("key", request.cache_key.strip().lower(), scope)
        if which == "model":
            if not request.model:
                raise invalid_field("model", "must not be empty")
            routes = self._gateway.settings.routes
            return Invalidation("model", cache_model(routes, self._gateway.resolver, request.model), scope)
        if which == "tenant":
            if not request.tenant:
                raise invalid_field("tenant", "must not be empty")
            return Invalidation("tenant", request.tenant, visible_tenant(principal, request.tenant))
        if which == "all":
            if not request.all:
                raise invalid_field("all", "must be true")
            return Invalidation("all", "", scope)
        raise invalid_field("target", "set one of cache_key, model, tenant or all")

    def _audit(self, target: Invalidation, removed: int) -> None:
        outbox = self._gateway.outbox
        state = current_call.get()
        if outbox is None or state is None or state.principal is None:
            return
        principal = state.principal
        outbox.audit(
            AuditRecord(
                time_us=now_us(),
                actor=principal.subject,
                action="cache.invalidate",
                outcome=OUTCOME_SUCCESS,
                tenant=target.tenant or "",
                auth_method=principal.method,
                resource=f"cache/{target.kind}",
                request_id=state.request_id,
                details={"target": target.kind, "removed_count": removed},
            )
        )

    async def InvalidateCache(
        self, request: admin_pb2.InvalidateCacheRequest, context: Context
    ) -> admin_pb2.InvalidateCacheResponse:
        target = self._target(request)
        cache = self._cache()
        if cache is None:
            return admin_pb2.InvalidateCacheResponse(removed_count=0, exact=True)
        removed = await cache.invalidate(target)
        self._audit(target, removed)
        return admin_pb2.InvalidateCacheResponse(removed_count=removed, exact=cache.exact_counts)
