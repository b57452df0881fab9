"""In-process backend (the default): aiocache's SimpleMemoryCache, bounded in entries and bytes.

Contract: see backends/base.py. Entries live in this process only (each replica has its own cache).
When a bound is exceeded the least recently used entries are evicted. Expired entries are removed by
aiocache's TTL timer. Invalidation is exact.
"""

from __future__ import annotations

from collections import OrderedDict

from aiocache import SimpleMemoryCache

from homa_server.policy.cache.backends.base import Invalidation, Slot, tag
from homa_server.policy.cache.entry import BytesSerializer


def storage_key(slot: Slot) -> str:
    """`<tenant tag>:<model tag>:<key>`."""
    return f"{tag(slot.tenant)}:{tag(slot.model)}:{slot.key}"


def matches(stored: str, target: Invalidation) -> bool:
    """Whether the storage key `stored` (`storage_key` format) falls under `target`."""
    tenant_tag, model_tag, key = stored.split(":", 2)
    if target.tenant is not None and tenant_tag != tag(target.tenant):
        return False
    if target.kind == "key":
        return key == target.value
    if target.kind == "model":
        return model_tag == tag(target.value)
    if target.kind == "tenant":
        return tenant_tag == tag(target.value)
    return True


class MemoryBackend:
    """Bounded in-process cache (see the module docstring)."""

    name = "memory"
    exact_counts = True

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._cache = SimpleMemoryCache(serializer=BytesSerializer(), timeout=None)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # storage key -> size, LRU order
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._sizes)

    def _forget(self, key: str) -> None:
        self._bytes -= self._sizes.pop(key, 0)

    async def get(self, slot: Slot) -> bytes | None:
        """The stored bytes, or None."""
        key = storage_key(slot)
        value: bytes | None = await self._cache.get(key)
        if value is None:
            self._forget(key)  # expired by aiocache's timer
        elif key in self._sizes:
            self._sizes.move_to_end(key)
        return value

    async def put(self, slot: Slot, value: bytes, ttl_s: float) -> None:
        """Store, then evict least recently used entries beyond the bounds."""
        if len(value) > self._max_bytes:
            return
        key = storage_key(slot)
        await self._cache.set(key, value, ttl=ttl_s)
        self._forget(key)
        self._sizes[key] = len(value)
        self._bytes += len(value)
        while len(self._sizes) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._sizes))
            self._forget(oldest)
            await self._cache.delete(oldest)

    async def invalidate(self, target: Invalidation) -> int:
        """Remove matching entries; exact count."""
        removed = 0
        for key in [k for k in self._sizes if matches(k, target)]:
            self._forget(key)
            removed += int(await self._cache.delete(key))
        return removed

    async def aclose(self) -> None:
        """Drop everything."""
        await self._cache.clear()
        self._sizes.clear()
        self._bytes = 0
