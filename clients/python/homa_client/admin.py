"""The `client.admin` namespace: the catalogue part of AdminService (models, providers, server info)
and API keys (homa_client/admin_keys.py).

Methods take the same `timeout`, `request_id` and `metadata` keywords as `client.chat`. List
methods follow `next_page_token` to the last page; `timeout` then applies to each page, and each
page is a call of its own (with its own request id when `request_id` is not given). The gateway
may require an admin scope for these calls (PermissionDeniedError otherwise).
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline, propagated to the gateway (see unary.py)

from __future__ import annotations

from collections.abc import Callable

import grpc

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa_client.admin_keys import ApiKeyCalls, AsyncApiKeyCalls
from homa_client.admin_usage import AsyncUsageCalls, UsageCalls
from homa_client.errors import InternalError
from homa_client.invocation import CallOptions, CallSettings, MetadataInput
from homa_client.unary import call_async, call_sync

# Client-side reason for a gateway that hands out a page token twice (paging would never end).
PAGINATION_LOOP = "PAGINATION_LOOP"


def _models_request(provider: str, page_size: int, include_deprecated: bool) -> admin_pb2.ListModelsRequest:
    if page_size < 0:
        raise ValueError("page_size must not be negative")
    return admin_pb2.ListModelsRequest(
        provider=provider, page_size=page_size, include_deprecated=include_deprecated
    )


def _advance(request: admin_pb2.ListModelsRequest, token: str, seen: set[str]) -> bool:
    """Point `request` at the next page; False when there is none."""
    if not token:
        return False
    if token in seen:
        raise InternalError(
            "the gateway repeated a page token", code=grpc.StatusCode.INTERNAL, reason=PAGINATION_LOOP
        )
    seen.add(token)
    request.page_token = token
    return True


class AsyncAdmin(AsyncApiKeyCalls, AsyncUsageCalls):
    """AdminService calls of `AsyncHomaClient` (use `client.admin`); API key calls in admin_keys.py."""

    def __init__(self, stub: Callable[[], admin_grpc.AdminServiceAsyncStub], settings: CallSettings) -> None:
        self._get_stub = stub  # the channel is opened lazily, on the loop of the first call
        self._settings = settings

    @property
    def _stub(self) -> admin_grpc.AdminServiceAsyncStub:
        return self._get_stub()

    async def list_models(
        self,
        provider: str = "",
        *,
        include_deprecated: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.Model]:
        """Every model the gateway can route to, ordered by id.

        Args:
            provider: only models of this provider instance; "" for all.
            include_deprecated: include deprecated models.
            page_size: models per page (0 = gateway default); all pages are fetched either way.

        Raises:
            NotFoundError: reason PROVIDER_NOT_FOUND for an unknown `provider`.
        """
        request = _models_request(provider, page_size, include_deprecated)
        options = CallOptions(timeout, request_id, metadata)
        models: list[admin_pb2.Model] = []
        seen: set[str] = set()
        while True:
            page = await call_async(self._settings, self._stub.ListModels, request, options)
            models.extend(page.models)
            if not _advance(request, page.next_page_token, seen):
                return models

    async def get_model(
        self,
        model: str,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.Model:
        """One model by id ("provider/model") or alias.

        Raises:
            NotFoundError: reason MODEL_NOT_FOUND or PROVIDER_NOT_FOUND.
        """
        request = admin_pb2.GetModelRequest(model=model)
        options = CallOptions(timeout, request_id, metadata)
        return (await call_async(self._settings, self._stub.GetModel, request, options)).model

    async def list_providers(
        self,
        probe: bool = False,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.Provider]:
        """The configured provider instances; `probe=True` runs a fresh health probe first (slower)."""
        request = admin_pb2.ListProvidersRequest(probe=probe)
        options = CallOptions(timeout, request_id, metadata)
        return list((await call_async(self._settings, self._stub.ListProviders, request, options)).providers)

    async def server_info(
        self,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.GetServerInfoResponse:
        """Version, build, API versions, providers and features of the gateway replica answering."""
        request = admin_pb2.GetServerInfoRequest()
        options = CallOptions(timeout, request_id, metadata)
        return await call_async(self._settings, self._stub.GetServerInfo, request, options)


class Admin(ApiKeyCalls, UsageCalls):
    """AdminService calls of `HomaClient` (use `client.admin`); same methods as `AsyncAdmin`."""

    def __init__(self, stub: admin_grpc.AdminServiceStub, settings: CallSettings) -> None:
        self._stub = stub
        self._settings = settings

    def list_models(
        self,
        provider: str = "",
        *,
        include_deprecated: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.Model]:
        """Every model the gateway can route to; see `AsyncAdmin.list_models`."""
        request = _models_request(provider, page_size, include_deprecated)
        options = CallOptions(timeout, request_id, metadata)
        models: list[admin_pb2.Model] = []
        seen: set[str] = set()
        while True:
            page = call_sync(self._settings, self._stub.ListModels, request, options)
            models.extend(page.models)
            if not _advance(request, page.next_page_token, seen):
                return models

    def get_model(
        self,
        model: str,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.Model:
        """One model by id ("provider/model") or alias."""
        request = admin_pb2.GetModelRequest(model=model)
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.GetModel, request, options).model

    def list_providers(
        self,
        probe: bool = False,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> list[admin_pb2.Provider]:
        """The configured provider instances; `probe=True` runs a fresh health probe first."""
        request = admin_pb2.ListProvidersRequest(probe=probe)
        options = CallOptions(timeout, request_id, metadata)
        return list(call_sync(self._settings, self._stub.ListProviders, request, options).providers)

    def server_info(
        self,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> admin_pb2.GetServerInfoResponse:
        """Version, build, API versions, providers and features of the gateway replica answering."""
        request = admin_pb2.GetServerInfoRequest()
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.GetServerInfo, request, options)
