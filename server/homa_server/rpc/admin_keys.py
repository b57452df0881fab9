"""API key RPCs of AdminService (Create/List/Get/Update/RevokeApiKey) and the logic behind them.

Contract (`ApiKeyManager`, shared with `homa keys --local`):
    * Tenant isolation (auth/tenancy.py): a key of another tenant answers NOT_FOUND
      (RESOURCE_NOT_FOUND, same as a missing key) unless the caller holds `tenants:all`; creating
      or listing in another tenant without it is PERMISSION_DENIED.
    * No privilege escalation: a caller may only grant scopes it holds itself (PERMISSION_DENIED).
    * Create returns the secret once; only its hash and prefix are stored.
    * Revocation is idempotent and effective at once on this replica (the verifier's cache entry is
      dropped); other replicas stop accepting the key within `auth.api_key.cache_ttl_s`.
    * Create, update and revoke are audited (`api_key.create|update|revoke`, resource
      `apiKeys/<id>`) whatever the outcome; details never contain the secret or its hash.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.auth.api_keys import ApiKeyVerifier, generate_secret, hash_secret, secret_prefix
from homa_server.auth.policy import DEFAULT_SCOPES
from homa_server.auth.principal import Principal, permission_denied
from homa_server.auth.tenancy import CROSS_TENANT_SCOPE, current_principal, owning_tenant, visible_tenant
from homa_server.errors import Code, GatewayError, Reason, invalid_field, resource_not_found
from homa_server.observability.call_state import current_call
from homa_server.rpc.api_key_fields import SETTABLE, MaskPlan, mask_plan, read_fields, tenant_problem
from homa_server.store.api_keys import ApiKeyRepository, StoredKey, to_proto
from homa_server.store.database import now_us
from homa_server.store.records import (
    OUTCOME_DENIED,
    OUTCOME_FAILURE,
    OUTCOME_SUCCESS,
    AuditRecord,
    Recorder,
    new_id,
)

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 1000
KIND: Final = "api key"
#: Every scope token a key may carry: those of the default policy plus `tenants:all`.
BASE_SCOPES: Final = frozenset(
    {scope for methods in DEFAULT_SCOPES.values() for scope in methods.values()} | {CROSS_TENANT_SCOPE}
)


class _Call(NamedTuple):
    """Who does which audited action, in which request."""

    principal: Principal
    action: str
    request_id: str


def _key_id(value: str, field: str = "api_key_id") -> str:
    if not value:
        raise invalid_field(field, "required")
    if len(value) > 64:
        raise invalid_field(field, "at most 64 characters")
    return value


class ApiKeyManager:
    """Key administration for one principal per call (see the module docstring)."""

    def __init__(
        self,
        repository: ApiKeyRepository,
        recorder: Recorder,
        *,
        verifier: ApiKeyVerifier | None = None,
        known_scopes: Collection[str] = BASE_SCOPES,
    ) -> None:
        self.repository = repository
        self._recorder = recorder
        self._verifier = verifier
        self._known = frozenset(known_scopes) | BASE_SCOPES

    def _audit(
        self, call: _Call, key_id: str, tenant: str, error: Exception | None, details: dict[str, Any]
    ) -> None:
        principal, action, request_id = call
        if error is None:
            outcome, reason = OUTCOME_SUCCESS, ""
        elif not isinstance(error, GatewayError):
            outcome, reason = OUTCOME_FAILURE, str(Reason.INTERNAL)
        else:
            denied = error.code in (Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.NOT_FOUND)
            outcome, reason = (OUTCOME_DENIED if denied else OUTCOME_FAILURE), str(error.reason)
        self._recorder.audit(
            AuditRecord(
                time_us=now_us(),
                actor=principal.subject,
                action=action,
                outcome=outcome,
                tenant=tenant[:128],  # unvalidated on failures: never overflow the audit columns
                auth_method=principal.method,
                resource=f"apiKeys/{key_id[:64]}" if key_id else "apiKeys",
                reason=reason,
                request_id=request_id,
                details=details,
            )
        )

    def _check_grant(self, principal: Principal, scopes: Collection[str]) -> None:
        if not set(scopes) <= principal.scopes:
            raise permission_denied()

    @staticmethod
    def _read_tenant(principal: Principal) -> str | None:
        return None if principal.has_scope(CROSS_TENANT_SCOPE) else principal.tenant

    def _forget(self, key: StoredKey) -> None:
        if self._verifier is not None:
            self._verifier.forget(key.secret_hash)

    async def create(
        self, principal: Principal, request: admin_pb2.CreateApiKeyRequest, request_id: str = ""
    ) -> admin_pb2.CreateApiKeyResponse:
        """Create a key; the response carries the secret (the only time it is shown)."""
        key_id = new_id("key")
        requested = request.api_key
        tenant = requested.tenant or principal.tenant
        try:
            problem = tenant_problem(tenant)
            if problem:
                raise invalid_field("api_key.tenant", problem)
            tenant = owning_tenant(principal, requested.tenant)
            now = now_us()
            values = read_fields(requested, SETTABLE, known_scopes=self._known, now_us=now, require_name=True)
            self._check_grant(principal, values["scopes"])
            secret = generate_secret()
            key = await self.repository.create(
                StoredKey(
                    api_key_id=key_id,
                    tenant=tenant,
                    secret_hash=hash_secret(secret),
                    secret_prefix=secret_prefix(secret),
                    create_time_us=now,
                    update_time_us=now,
                    **values,
                )
            )
        except Exception as error:  # audited whatever the failure, then re-raised
            self._audit(
                _Call(principal, "api_key.create", request_id),
                "",
                tenant,
                error,
                {"name": requested.name[:256]},
            )
            raise
        details = {
            "name": key.name,
            "scopes": key.scopes,
            "allowed_models": key.allowed_models,
            "api_key_id": key_id,
        }
        self._audit(_Call(principal, "api_key.create", request_id), key_id, tenant, None, details)
        return admin_pb2.CreateApiKeyResponse(api_key=to_proto(key), secret=secret)

    async def get(self, principal: Principal, api_key_id: str) -> admin_pb2.ApiKey:
        """One key of a tenant the caller may see (NOT_FOUND otherwise)."""
        key = await self.repository.get(_key_id(api_key_id), self._read_tenant(principal))
        if key is None:
            raise resource_not_found(KIND, api_key_id)
        return to_proto(key)

    async def list_keys(
        self, principal: Principal, request: admin_pb2.ListApiKeysRequest
    ) -> admin_pb2.ListApiKeysResponse:
        """A page of keys, newest first (filter and paging per AIP-158/160)."""
        if request.page_size < 0:
            raise invalid_field("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        keys, token = await self.repository.list_keys(
            visible_tenant(principal),
            page_size=size,
            page_token=request.page_token,
            filter_text=request.filter,
        )
        now = now_us()
        return admin_pb2.ListApiKeysResponse(api_keys=[to_proto(k, now) for k in keys], next_page_token=token)

    async def update(
        self, principal: Principal, request: admin_pb2.UpdateApiKeyRequest, request_id: str = ""
    ) -> admin_pb2.ApiKey:
        """Apply the fields named by `update_mask` (sub-fields and single labels merge)."""
        key_id = request.api_key.api_key_id
        tenant = principal.tenant
        paths = list(request.update_mask.paths)
        try:
            _key_id(key_id, "api_key.api_key_id")
            plan = mask_plan(paths, request.api_key)
            names = set(plan.fields) | set(plan.subfields) | ({"labels"} if plan.labels else set())
            values = read_fields(request.api_key, names, known_scopes=self._known, now_us=now_us())
            if "scopes" in values:
                self._check_grant(principal, values["scopes"])
            updated = await self.repository.update(
                key_id, self._read_tenant(principal), lambda current: _changes(plan, values, current)
            )
            if updated is None:
                raise resource_not_found(KIND, key_id)
        except Exception as error:  # audited whatever the failure, then re-raised
            self._audit(
                _Call(principal, "api_key.update", request_id),
                key_id,
                tenant,
                error,
                {"update_mask": paths[:32]},
            )
            raise
        self._forget(updated)
        self._audit(
            _Call(principal, "api_key.update", request_id),
            key_id,
            updated.tenant,
            None,
            {"changed": sorted(names)},
        )
        return to_proto(updated)

    async def revoke(
        self, principal: Principal, request: admin_pb2.RevokeApiKeyRequest, request_id: str = ""
    ) -> admin_pb2.ApiKey:
        """Revoke a key (idempotent); it stops working at once on this replica."""
        key_id = request.api_key_id
        tenant = principal.tenant
        reason = request.reason[:1024]
        try:
            _key_id(key_id)
            key = await self.repository.revoke(key_id, self._read_tenant(principal), reason)
            if key is None:
                raise resource_not_found(KIND, key_id)
        except Exception as error:  # audited whatever the failure, then re-raised
            self._audit(
                _Call(principal, "api_key.revoke", request_id), key_id, tenant, error, {"reason": reason}
            )
            raise
        self._forget(key)
        self._audit(
            _Call(principal, "api_key.revoke", request_id), key_id, key.tenant, None, {"reason": reason}
        )
        return to_proto(key)


def _changes(plan: MaskPlan, values: dict[str, Any], current: StoredKey) -> dict[str, Any]:
    """Column values to write: whole fields replaced, sub-fields and single labels merged into
    `current` (called with the row locked)."""
    changes: dict[str, Any] = {}
    for name in plan.fields:
        column = "expire_time_us" if name == "expire_time" else name
        changes[column] = values[column]
    for group, subs in plan.subfields.items():
        if group not in plan.fields:
            merged = {k: v for k, v in getattr(current, group).items() if k not in subs}
            merged.update({k: v for k, v in values[group].items() if k in subs})
            changes[group] = merged
    if plan.labels and "labels" not in plan.fields:
        labels = {k: v for k, v in current.labels.items() if k not in plan.labels}
        labels.update({k: v for k, v in values["labels"].items() if k in plan.labels})
        changes["labels"] = labels
    return changes


def _request_id() -> str:
    state = current_call.get()
    return state.request_id if state is not None else ""


class ApiKeyAdmin:
    """Part of the AdminService servicer (rpc/registration.py serves each RPC from the first part
    defining it)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._manager: ApiKeyManager | None = None

    @property
    def manager(self) -> ApiKeyManager:
        """The manager over the gateway's database, recorder and verifier (built on first use)."""
        if self._manager is None:
            auth = self._gateway.authenticator
            self._manager = ApiKeyManager(
                ApiKeyRepository(self._gateway.db),
                self._gateway.recorder,
                verifier=auth.api_keys if auth is not None else None,
                known_scopes=auth.policy.all_scopes if auth is not None else BASE_SCOPES,
            )
        return self._manager

    async def CreateApiKey(
        self, request: admin_pb2.CreateApiKeyRequest, context: Context
    ) -> admin_pb2.CreateApiKeyResponse:
        return await self.manager.create(current_principal(), request, _request_id())

    async def ListApiKeys(
        self, request: admin_pb2.ListApiKeysRequest, context: Context
    ) -> admin_pb2.ListApiKeysResponse:
        return await self.manager.list_keys(current_principal(), request)

    async def GetApiKey(
        self, request: admin_pb2.GetApiKeyRequest, context: Context
    ) -> admin_pb2.GetApiKeyResponse:
        return admin_pb2.GetApiKeyResponse(
            api_key=await self.manager.get(current_principal(), request.api_key_id)
        )

    async def UpdateApiKey(
        self, request: admin_pb2.UpdateApiKeyRequest, context: Context
    ) -> admin_pb2.UpdateApiKeyResponse:
        return admin_pb2.UpdateApiKeyResponse(
            api_key=await self.manager.update(current_principal(), request, _request_id())
        )

    async def RevokeApiKey(
        self, request: admin_pb2.RevokeApiKeyRequest, context: Context
    ) -> admin_pb2.RevokeApiKeyResponse:
        return admin_pb2.RevokeApiKeyResponse(
            api_key=await self.manager.revoke(current_principal(), request, _request_id())
        )
