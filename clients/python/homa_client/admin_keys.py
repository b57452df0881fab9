"""API key calls of `client.admin` (CreateApiKey, ListApiKeys, GetApiKey, UpdateApiKey, RevokeApiKey).

Mixed into `AsyncAdmin` / `Admin` (homa_client/admin.py); same keywords (`timeout`, `request_id`,
`metadata`) and typed errors as the other admin calls. The secret of a new key is in the
`CreateApiKeyResponse` only: the gateway never returns it again. `list_api_keys` follows
`next_page_token` to the last page. Needs the `admin:write` / `admin:read` scopes
(PermissionDeniedError otherwise); keys of another tenant are NotFoundError.
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline, propagated to the gateway (see unary.py)

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import grpc
from google.protobuf import field_mask_pb2

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa_client.errors import InternalError
from homa_client.invocation import CallOptions, CallSettings, MetadataInput
from homa_client.unary import call_async, call_sync

_PAGINATION_LOOP = "PAGINATION_LOOP"


def new_api_key(
    name: str,
    *,
    scopes: Iterable[str],
    tenant: str = "",
    owner: str = "",
    allowed_models: Iterable[str] = (),
    expire_time: datetime | None = None,
    labels: Mapping[str, str] | None = None,
) -> admin_pb2.ApiKey:
    """The fields of a key to create (`expire_time` must be time-zone aware)."""
    key = admin_pb2.ApiKey(
        name=name,
        owner=owner,
        tenant=tenant,
        scopes=list(scopes),
        allowed_models=list(allowed_models),
        labels=dict(labels or {}),
    )
    if expire_time is not None:
        if expire_time.tzinfo is None:
            raise ValueError("expire_time must be time-zone aware")
        key.expire_time.FromDatetime(expire_time)
    return key


def _list_request(filter: str, page_size: int) -> admin_pb2.ListApiKeysRequest:
    if page_size < 0:
        raise ValueError("page_size must not be negative")
    return admin_pb2.ListApiKeysRequest(filter=filter, page_size=page_size)


def _next_page(request: admin_pb2.ListApiKeysRequest, token: str, seen: set[str]) -> bool:
    if not token:
        return False
    if token in seen:
        raise InternalError(
            "the gateway repeated a page token", code=grpc.StatusCode.INTERNAL, reason=_PAGINATION_LOOP
        )
    seen.add(token)
    request.page_token = token
    return True


def _update_request(api_key: admin_pb2.ApiKey, paths: Iterable[str]) -> admin_pb2.UpdateApiKeyRequest:
    return admin_pb2.UpdateApiKeyRequest(
        api_key=api_key, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )


class AsyncApiKeyCalls:
    """API key methods of `AsyncAdmin`."""

    _settings: CallSettings

    @property
    def _stub(self) -> admin_grpc.AdminServiceAsyncStub:
        raise NotImplementedError

    async def create_api_key(
        self,
        api_key: admin_pb2.ApiKey,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.CreateApiKeyResponse:
        """Create a key (build `api_key` with `new_api_key`); the response holds the secret, once.

        Raises:
            InvalidArgumentError: bad fields (field violations list them).
            PermissionDeniedError: another tenant without `tenants:all`, or scopes the caller lacks.
        """
        request = admin_pb2.CreateApiKeyRequest(api_key=api_key)
        return await call_async(
            self._settings, self._stub.CreateApiKey, request, CallOptions(timeout, request_id, metadata)
        )

    async def list_api_keys(
        self,
        filter: str = "",
        *,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.ApiKey]:
        """Every key the caller may see matching the AIP-160 `filter`, newest first."""
        request = _list_request(filter, page_size)
        options = CallOptions(timeout, request_id, metadata)
        keys: list[admin_pb2.ApiKey] = []
        seen: set[str] = set()
        while True:
            page = await call_async(self._settings, self._stub.ListApiKeys, request, options)
            keys.extend(page.api_keys)
            if not _next_page(request, page.next_page_token, seen):
                return keys

    async def get_api_key(
        self,
        api_key_id: str,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """One key (never its secret). Raises NotFoundError (RESOURCE_NOT_FOUND)."""
        request = admin_pb2.GetApiKeyRequest(api_key_id=api_key_id)
        options = CallOptions(timeout, request_id, metadata)
        return (await call_async(self._settings, self._stub.GetApiKey, request, options)).api_key

    async def update_api_key(
        self,
        api_key: admin_pb2.ApiKey,
        paths: Iterable[str],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """Change the fields named in `paths` (an update mask) to their values in `api_key`."""
        request = _update_request(api_key, paths)
        options = CallOptions(timeout, request_id, metadata)
        return (await call_async(self._settings, self._stub.UpdateApiKey, request, options)).api_key

    async def revoke_api_key(
        self,
        api_key_id: str,
        reason: str = "",
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """Revoke a key for good (idempotent); it stops working on every replica within seconds."""
        request = admin_pb2.RevokeApiKeyRequest(api_key_id=api_key_id, reason=reason)
        options = CallOptions(timeout, request_id, metadata)
        return (await call_async(self._settings, self._stub.RevokeApiKey, request, options)).api_key


class ApiKeyCalls:
    """API key methods of `Admin`; same as `AsyncApiKeyCalls`."""

    _settings: CallSettings
    _stub: admin_grpc.AdminServiceStub

    def create_api_key(
        self,
        api_key: admin_pb2.ApiKey,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.CreateApiKeyResponse:
        """Create a key; the response holds the secret, once. See `AsyncApiKeyCalls.create_api_key`."""
        request = admin_pb2.CreateApiKeyRequest(api_key=api_key)
        return call_sync(
            self._settings, self._stub.CreateApiKey, request, CallOptions(timeout, request_id, metadata)
        )

    def list_api_keys(
        self,
        filter: str = "",
        *,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.ApiKey]:
        """Every key the caller may see matching the AIP-160 `filter`, newest first."""
        request = _list_request(filter, page_size)
        options = CallOptions(timeout, request_id, metadata)
        keys: list[admin_pb2.ApiKey] = []
        seen: set[str] = set()
        while True:
            page = call_sync(self._settings, self._stub.ListApiKeys, request, options)
            keys.extend(page.api_keys)
            if not _next_page(request, page.next_page_token, seen):
                return keys

    def get_api_key(
        self,
        api_key_id: str,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """One key (never its secret). Raises NotFoundError (RESOURCE_NOT_FOUND)."""
        request = admin_pb2.GetApiKeyRequest(api_key_id=api_key_id)
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.GetApiKey, request, options).api_key

    def update_api_key(
        self,
        api_key: admin_pb2.ApiKey,
        paths: Iterable[str],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """Change the fields named in `paths` (an update mask) to their values in `api_key`."""
        request = _update_request(api_key, paths)
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.UpdateApiKey, request, options).api_key

    def revoke_api_key(
        self,
        api_key_id: str,
        reason: str = "",
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.ApiKey:
        """Revoke a key for good (idempotent)."""
        request = admin_pb2.RevokeApiKeyRequest(api_key_id=api_key_id, reason=reason)
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.RevokeApiKey, request, options).api_key
