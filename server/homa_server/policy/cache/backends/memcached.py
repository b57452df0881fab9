"""Memcached backend through aiocache's MemcachedCache (aiomcache), shared by every replica.

Contract: see backends/base.py. Memcached cannot list keys, so model, tenant and "all"
invalidations bump a generation counter instead (`exact_counts` is False, the count is 0):

    * Counters: `<ns>:g:all`, `<ns>:g:t:<tenant tag>`, `<ns>:g:m:<model tag>`,
      `<ns>:g:tm:<tenant tag>:<model tag>` (the last one for a tenant invalidating one model).
    * An entry `<ns>:e:<key>` is stored as 4 x i64 (the counters when written) + the tenant tag
      (16 bytes) + the entry bytes. A read fetches the entry and the four counters in one `get_multi`
      and treats any difference as a miss.
    * A counter that does not exist (never bumped, or evicted by Memcached) is created with the
      current time in microseconds, so a re-created counter never equals an older stamp and
      invalidated entries cannot come back.
    * Invalidation by key is exact: the entry is read, its tenant tag checked, then deleted.
"""

from __future__ import annotations

import contextlib
import struct
import time

import aiomcache
from aiocache import MemcachedCache

from homa_server.policy.cache.backends.base import Invalidation, Slot, tag
from homa_server.policy.cache.entry import BytesSerializer

_STAMPS = struct.Struct(">4q")
_TAG_BYTES = 16
_MAX_TTL_S = 30 * 86400  # Memcached reads larger expiry values as absolute Unix times


class MemcachedBackend:
    """Shared cache in Memcached (see the module docstring)."""

    name = "memcached"
    exact_counts = False

    def __init__(self, address: str, namespace: str, timeout_s: float) -> None:
        host, _, port = address.rpartition(":")
        self._cache = MemcachedCache(
            serializer=BytesSerializer(),
            endpoint=host or "127.0.0.1",
            port=int(port or 11211),
            timeout=timeout_s,
            pool_size=4,
        )
        self._ns = namespace

    def _counters(self, tenant: str, model: str) -> list[str]:
        t, m = tag(tenant), tag(model)
        return [f"{self._ns}:g:all", f"{self._ns}:g:t:{t}", f"{self._ns}:g:m:{m}", f"{self._ns}:g:tm:{t}:{m}"]

    def _entry_key(self, key: str) -> str:
        return f"{self._ns}:e:{key}"

    async def get(self, slot: Slot) -> bytes | None:
        """The entry bytes when present and every generation still matches."""
        names = self._counters(slot.tenant, slot.model)
        values: list[bytes | None] = await self._cache.multi_get([self._entry_key(slot.key), *names])
        stored = values[0]
        if stored is None or len(stored) < _STAMPS.size + _TAG_BYTES:
            return None
        if any(v is None for v in values[1:]):
            return None  # a counter vanished: entries stamped with it are gone for good
        current = tuple(int(v) for v in values[1:] if v is not None)
        if _STAMPS.unpack_from(stored) != current:
            return None
        if stored[_STAMPS.size : _STAMPS.size + _TAG_BYTES] != tag(slot.tenant).encode():
            return None
        return stored[_STAMPS.size + _TAG_BYTES :]

    async def put(self, slot: Slot, value: bytes, ttl_s: float) -> None:
        """Store the entry stamped with the current generations."""
        names = self._counters(slot.tenant, slot.model)
        values: list[bytes | None] = await self._cache.multi_get(names)
        stamps = []
        for name, found in zip(names, values, strict=True):
            current = found
            if current is None:
                await self._create_counter(name)
                current = await self._cache.get(name)
                if current is None:
                    return  # Memcached is dropping keys as fast as we write them: do not store
            stamps.append(int(current))
        header = _STAMPS.pack(*stamps) + tag(slot.tenant).encode()
        ttl = max(1, min(int(ttl_s), _MAX_TTL_S))
        await self._cache.set(self._entry_key(slot.key), header + value, ttl=ttl)

    async def _create_counter(self, name: str) -> None:
        with contextlib.suppress(ValueError):  # another writer created it first
            await self._cache.add(name, str(time.time_ns() // 1000).encode(), ttl=0)

    async def _bump(self, name: str) -> None:
        try:
            await self._cache.client.incr(name.encode(), 1)
        except aiomcache.exceptions.ClientException:  # NOT_FOUND: never created, or evicted
            await self._create_counter(name)

    async def invalidate(self, target: Invalidation) -> int:
        """Delete one key (exact) or bump a generation (count 0)."""
        if target.kind == "key":
            stored: bytes | None = await self._cache.get(self._entry_key(target.value))
            if stored is None or len(stored) < _STAMPS.size + _TAG_BYTES:
                return 0
            owner = stored[_STAMPS.size : _STAMPS.size + _TAG_BYTES].decode(errors="replace")
            if target.tenant is not None and owner != tag(target.tenant):
                return 0
            return int(await self._cache.delete(self._entry_key(target.value)))
        if target.kind == "tenant":
            if target.tenant is not None and target.tenant != target.value:
                return 0
            await self._bump(f"{self._ns}:g:t:{tag(target.value)}")
        elif target.kind == "model":
            if target.tenant is None:
                await self._bump(f"{self._ns}:g:m:{tag(target.value)}")
            else:
                await self._bump(f"{self._ns}:g:tm:{tag(target.tenant)}:{tag(target.value)}")
        elif target.tenant is None:
            await self._bump(f"{self._ns}:g:all")
        else:
            await self._bump(f"{self._ns}:g:t:{tag(target.tenant)}")
        return 0

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._cache.client.close()
