"""AdminService servicer: models, providers and server info.

API keys, usage, audit, compliance, webhooks, events and cache RPCs are not defined here yet and
answer UNIMPLEMENTED through rpc/registration.py.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from google.protobuf import timestamp_pb2
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server import __version__
from homa_server.catalog.listing import ModelCatalog
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.breaker import BreakerBoard, CircuitState
from homa_server.settings import Settings

Context = aio.ServicerContext[Any, Any]

_DEFAULT_PAGE = 100
_MAX_PAGE = 1000
API_VERSIONS = (
    "homa.chat.v1",
    "homa.image.v1",
    "homa.audio.v1",
    "homa.embedding.v1",
    "homa.admin.v1",
    "homa.batch.v1",
)
FEATURES = (
    "chat",
    "chat.streaming",
    "chat.converse",
    "chat.count_tokens",
    "chat.conversations",
    "embeddings",
    "embeddings.collections",
    "api_keys",
    "usage",
    "audit",
    "health",
)


def _features(settings: Settings) -> list[str]:
    """The always-on features plus the configured ones ("cache:redis", "limits:memory", "auth:jwt"...)."""
    found = list(FEATURES)
    if settings.server.reflection:
        found.append("reflection")
    found += [f"auth:{mode}" for mode in settings.auth.mode]
    storage = "postgresql" if settings.storage.database_url().startswith("postgresql") else "sqlite"
    found.append(f"storage:{storage}")
    if settings.cache.enabled:
        found.append(f"cache:{settings.cache.backend}")
    if settings.limits.enabled:
        found.append(f"limits:{settings.limits.backend}")
    return found


_CIRCUIT = {
    CircuitState.CLOSED: admin_pb2.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: admin_pb2.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: admin_pb2.CIRCUIT_STATE_HALF_OPEN,
}


def _page_bounds(page_size: int, page_token: str) -> tuple[int, int]:
    if page_size < 0:
        raise invalid_field("page_size", "must not be negative")
    size = min(page_size or _DEFAULT_PAGE, _MAX_PAGE)
    if not page_token:
        return 0, size
    try:
        start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise invalid_field("page_token", "not a token returned by this API") from None
    if start < 0:
        raise invalid_field("page_token", "not a token returned by this API")
    return start, size


def _next_token(start: int, size: int, total: int) -> str:
    end = start + size
    return base64.urlsafe_b64encode(str(end).encode()).decode() if end < total else ""


class AdminServicer:
    """Implements the catalogue part of homa.admin.v1.AdminService."""

    def __init__(
        self, registry: ProviderRegistry, settings: Settings, breakers: BreakerBoard | None = None
    ) -> None:
        self._registry = registry
        self._breakers = breakers
        self._settings = settings
        self._catalog = ModelCatalog(registry)
        self._started = timestamp_pb2.Timestamp()
        self._started.GetCurrentTime()
        self._instance = f"{os.uname().nodename}-{os.getpid()}"

    async def ListModels(
        self, request: admin_pb2.ListModelsRequest, context: Context
    ) -> admin_pb2.ListModelsResponse:
        if request.filter:
            raise invalid_field("filter", "filters are not supported yet; use `provider`")
        if request.provider:
            self._registry.get(request.provider)
        start, size = _page_bounds(request.page_size, request.page_token)
        models = await self._catalog.all_models(request.provider)
        return admin_pb2.ListModelsResponse(
            models=models[start : start + size], next_page_token=_next_token(start, size, len(models))
        )

    async def GetModel(
        self, request: admin_pb2.GetModelRequest, context: Context
    ) -> admin_pb2.GetModelResponse:
        provider, sep, model = request.model.partition("/")
        if not sep or not model:
            raise invalid_field("model", "expected provider/model")
        self._registry.get(provider)
        for candidate in await self._catalog.all_models(provider):
            if candidate.provider_model == model:
                return admin_pb2.GetModelResponse(model=candidate)
        raise GatewayError(
            f"provider {provider!r} does not list model {model!r}",
            Code.NOT_FOUND,
            Reason.MODEL_NOT_FOUND,
            metadata={"provider": provider, "model": model},
        )

    async def ListProviders(
        self, request: admin_pb2.ListProvidersRequest, context: Context
    ) -> admin_pb2.ListProvidersResponse:
        providers = []
        for name, provider in sorted(self._registry.items()):
            spec = self._registry.settings_of(name)
            item = admin_pb2.Provider(
                name=name, kind=provider.kind, base_url=spec.base_url or "", enabled=spec.enabled
            )
            if request.probe:
                probe = await self._catalog.probe(name)
                item.model_count = len(probe.models)
                item.last_probe_time.GetCurrentTime()
                item.last_probe_latency.FromNanoseconds(int(probe.latency_s * 1e9))
                if probe.error is None:
                    item.health = admin_pb2.PROVIDER_HEALTH_HEALTHY
                else:
                    item.health = admin_pb2.PROVIDER_HEALTH_UNHEALTHY
                    item.last_error.reason = str(probe.error.reason)
                    item.last_error.message = probe.error.message
                    item.last_error.time.GetCurrentTime()
            else:
                item.model_count = len(await self._catalog.models_of(name))
            self._circuit(name, item)
            providers.append(item)
        return admin_pb2.ListProvidersResponse(providers=providers)

    def _circuit(self, name: str, item: admin_pb2.Provider) -> None:
        """Breaker state of the provider on this replica: the worst of its deployments' circuits
        (any open -> OPEN, else any half-open -> HALF_OPEN, else CLOSED), and their latest error
        unless a probe just reported one."""
        breakers = self._breakers.of_provider(name) if self._breakers is not None else []
        states = {b.state for b in breakers}
        item.circuit_state = _CIRCUIT[
            next((s for s in (CircuitState.OPEN, CircuitState.HALF_OPEN) if s in states), CircuitState.CLOSED)
        ]
        errors = [b.last_error for b in breakers if b.last_error is not None]
        if errors and not item.HasField("last_error"):
            latest = max(errors, key=lambda e: e.wall_time)
            item.last_error.reason = latest.reason
            item.last_error.message = latest.message
            item.last_error.http_status = latest.http_status
            item.last_error.time.FromNanoseconds(int(latest.wall_time * 1e9))

    async def GetServerInfo(
        self, request: admin_pb2.GetServerInfoRequest, context: Context
    ) -> admin_pb2.GetServerInfoResponse:
        return admin_pb2.GetServerInfoResponse(
            service_name="homa",
            version=__version__,
            build_commit=os.environ.get("HOMA_BUILD_COMMIT", ""),
            api_versions=list(API_VERSIONS),
            start_time=self._started,
            instance_id=self._instance,
            enabled_providers=self._registry.names(),
            features=_features(self._settings),
        )
