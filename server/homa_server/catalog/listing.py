"""The model catalogue: which models each provider instance serves.

A provider's models come from its `models` setting when given (no upstream call), otherwise from
the provider's own model listing, fetched once and kept. Each model is described from the capability
and price table (catalog/models.yaml); models the table does not list get their kind's defaults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.catalog.table import ModelTable, model_table
from homa_server.errors import GatewayError
from homa_server.providers.base import ModelListingProvider
from homa_server.providers.registry import ProviderRegistry

log = logging.getLogger("homa.catalog")

LIST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Probe:
    """Result of asking one provider for its models."""

    models: list[str]
    latency_s: float
    error: GatewayError | None


class ModelCatalog:
    """Models by provider, cached after the first successful listing."""

    def __init__(self, registry: ProviderRegistry, table: ModelTable | None = None) -> None:
        self._registry = registry
        self._table = table or model_table()
        self._cache: dict[str, list[str]] = {}

    async def probe(self, name: str) -> Probe:
        """Ask provider `name` for its models now (configured lists need no call)."""
        configured = self._registry.settings_of(name).models
        if configured:
            return Probe(list(configured), 0.0, None)
        provider = self._registry.get(name)
        if not isinstance(provider, ModelListingProvider):
            return Probe([], 0.0, None)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                models = await provider.list_models()
        except TimeoutError:
            return Probe([], time.perf_counter() - started, GatewayError("model listing timed out"))
        except GatewayError as exc:
            log.warning("model listing failed", extra={"provider": name, "reason": str(exc.reason)})
            return Probe([], time.perf_counter() - started, exc)
        self._cache[name] = models
        return Probe(models, time.perf_counter() - started, None)

    async def models_of(self, name: str) -> list[str]:
        """Models of provider `name` (cached listing; empty when the listing fails)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        return (await self.probe(name)).models

    async def all_models(self, provider: str = "") -> list[admin_pb2.Model]:
        """Every model of every (or one) provider, ordered by id."""
        names = [provider] if provider else self._registry.names()
        listings = await asyncio.gather(*(self.models_of(name) for name in names))
        models = [
            self._table.describe(name, self._registry.get(name).kind, model)
            for name, listing in zip(names, listings, strict=True)
            for model in listing
        ]
        return sorted(models, key=lambda m: m.id)
