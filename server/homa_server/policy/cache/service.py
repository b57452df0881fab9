"""The response cache as the dispatcher sees it: plan, look up, store, invalidate.

Contract:
    * `plan()` applies keys.py's rules (mode, determinism, conversation, max age) and the master
      switch `cache.enabled`; None means bypass.
    * A backend that fails or takes longer than `cache.timeout_s` is a miss (lookup) or a skipped
      store: the caller never waits longer than that per operation and never sees a cache error.
      Failures are logged (at most once per 10 s) and counted in `errors`.
    * Values are `entry.Entry` frames (protobuf bytes). A stored entry of the wrong shape or tenant,
      a corrupt one, or one older than the plan's max age is a miss.
    * Unary answers are stored as they were returned. Streams are stored only when they ended with a
      `finish` event (`StreamCapture`), never when cut, failed or cancelled.
    * The semantic cache, when configured, is consulted after an exact miss and written with the
      exact entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.policy.cache.backends.base import CacheBackend, Invalidation, Slot
from homa_server.policy.cache.entry import KIND_UNARY, CorruptEntryError, Entry, decode, encode
from homa_server.policy.cache.keys import CachePlan, Shape, plan
from homa_server.policy.cache.semantic import SemanticCache
from homa_server.settings import CacheSettings

log = logging.getLogger("homa.cache")

_LOG_EVERY_S = 10.0
#: Admin invalidations may scan many keys: they get this long whatever `timeout_s` says.
INVALIDATION_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached answer: `entry` and whether the semantic cache found it."""

    entry: Entry
    semantic: bool = False


class ResponseCache:
    """One process's view of the response cache (see the module docstring)."""

    def __init__(
        self, backend: CacheBackend, settings: CacheSettings, semantic: SemanticCache | None = None
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.semantic = semantic
        #: Backend operations that failed or timed out since start.
        self.errors = 0
        self._last_log = -_LOG_EVERY_S

    @property
    def exact_counts(self) -> bool:
        """Whether invalidation counts are exact (False for Memcached)."""
        return self.backend.exact_counts

    def plan(
        self, request: chat_pb2.CompleteRequest, *, tenant: str, model: str, shape: Shape
    ) -> CachePlan | None:
        """What the cache does for this call; None = bypass.

        Raises:
            GatewayError: INVALID_ARGUMENT for a negative `options.cache_max_age`.
        """
        if not self.settings.enabled:
            return None
        return plan(request, tenant=tenant, model=model, shape=shape, default_max_age_s=self.settings.ttl_s)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "response cache %s failed; treated as a miss",
                what,
                extra={"backend": self.backend.name, "error": repr(exc), "errors": self.errors},
            )

    def _usable(self, data: bytes | None, cache_plan: CachePlan) -> Entry | None:
        if data is None:
            return None
        try:
            entry = decode(data)
        except CorruptEntryError:
            return None
        kind_ok = (entry.kind == KIND_UNARY) == (cache_plan.shape == "unary")
        age_s = time.time() - entry.created_us / 1e6
        if not kind_ok or entry.tenant != cache_plan.tenant or entry.model != cache_plan.model:
            return None
        if age_s > cache_plan.max_age_s or age_s > self.settings.ttl_s:
            return None
        return entry

    async def lookup(self, cache_plan: CachePlan, request: chat_pb2.CompleteRequest) -> Hit | None:
        """The cached answer for this plan, or None (also when the plan does not read)."""
        if not cache_plan.read:
            return None
        slot = Slot(cache_plan.key, cache_plan.tenant, cache_plan.model)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                data = await self.backend.get(slot)
        except Exception as exc:
            self._failed("lookup", exc)
            data = None
        entry = self._usable(data, cache_plan)
        if entry is not None:
            return Hit(entry)
        if self.semantic is not None:
            entry = self._usable(await self.semantic.lookup(cache_plan, request), cache_plan)
            if entry is not None:
                return Hit(entry, semantic=True)
        return None

    async def _store(self, cache_plan: CachePlan, request: chat_pb2.CompleteRequest, entry: Entry) -> None:
        value = encode(entry)
        if not cache_plan.write or len(value) > self.settings.max_entry_bytes:
            return
        slot = Slot(cache_plan.key, cache_plan.tenant, cache_plan.model)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await self.backend.put(slot, value, self.settings.ttl_s)
        except Exception as exc:
            self._failed("store", exc)
        if self.semantic is not None:
            await self.semantic.store(cache_plan, request, value)

    async def store_response(
        self, cache_plan: CachePlan, request: chat_pb2.CompleteRequest, response: chat_pb2.CompleteResponse
    ) -> None:
        """Store a unary answer (no-op when the plan does not write)."""
        entry = Entry.of_response(
            response, tenant=cache_plan.tenant, model=cache_plan.model, now_us=time.time_ns() // 1000
        )
        await self._store(cache_plan, request, entry)

    async def store_events(
        self,
        cache_plan: CachePlan,
        request: chat_pb2.CompleteRequest,
        events: list[chat_pb2.StreamCompleteResponse],
    ) -> None:
        """Store a whole stream; only one that ends with a `finish` event is stored."""
        if not events or not events[-1].HasField("finish"):
            return
        entry = Entry.of_events(
            events, tenant=cache_plan.tenant, model=cache_plan.model, now_us=time.time_ns() // 1000
        )
        await self._store(cache_plan, request, entry)

    async def invalidate(self, target: Invalidation) -> int:
        """Remove matching entries (backend and semantic); the backend's count.

        Raises:
            Exception: the backend's error (the admin RPC reports it; nothing is hidden here).
        """
        if self.semantic is not None:
            self.semantic.invalidate(target)
        async with asyncio.timeout(INVALIDATION_TIMEOUT_S):
            return await self.backend.invalidate(target)

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()
