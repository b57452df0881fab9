"""Redis backend through aiocache's RedisCache, shared by every replica.

Contract: see backends/base.py. Keys are `<namespace>:c:<tenant tag>:<model tag>:<key>` with a
Redis TTL. Invalidation scans with `SCAN MATCH` on that layout and deletes in batches: exact counts.
Connect and command times are bounded by `timeout_s` (aiocache's per-operation timeout plus the
socket timeouts), so a dead Redis costs at most that per operation.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from aiocache import RedisCache
from redis.asyncio import Redis

from homa_server.policy.cache.backends.base import Invalidation, Slot, tag
from homa_server.policy.cache.entry import BytesSerializer

_BATCH = 500


class RedisBackend:
    """Shared cache in Redis (see the module docstring)."""

    name = "redis"
    exact_counts = True

    def __init__(self, url: str, namespace: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        db = parts.path.strip("/") or "0"
        self._cache = RedisCache(
            serializer=BytesSerializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            timeout=timeout_s,
            create_connection_timeout=timeout_s,
            connection_pool_kwargs={"socket_timeout": timeout_s},
        )
        self._prefix = f"{namespace}:c:"

    @property
    def client(self) -> Redis:
        """The redis.asyncio client (tests and invalidation scans)."""
        client: Redis = self._cache.client
        return client

    def _key(self, slot: Slot) -> str:
        return f"{self._prefix}{tag(slot.tenant)}:{tag(slot.model)}:{slot.key}"

    def _pattern(self, target: Invalidation) -> str:
        tenant = "*" if target.tenant is None else tag(target.tenant)
        if target.kind == "tenant":
            if target.tenant is not None and tag(target.value) != tenant:
                return ""  # another tenant's entries: nothing this caller may touch
            tenant = tag(target.value)
        model = tag(target.value) if target.kind == "model" else "*"
        key = target.value if target.kind == "key" else "*"
        if target.kind == "key" and not all(c in "0123456789abcdef" for c in key):
            return ""  # not a key this cache ever wrote (and no glob characters reach SCAN)
        return f"{self._prefix}{tenant}:{model}:{key}"

    async def get(self, slot: Slot) -> bytes | None:
        """The stored bytes, or None."""
        value: bytes | None = await self._cache.get(self._key(slot))
        return value

    async def put(self, slot: Slot, value: bytes, ttl_s: float) -> None:
        """SET with a millisecond TTL."""
        await self._cache.set(self._key(slot), value, ttl=float(ttl_s))

    async def invalidate(self, target: Invalidation) -> int:
        """SCAN the matching keys and delete them; exact count."""
        pattern = self._pattern(target)
        if not pattern:
            return 0
        removed = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=_BATCH):
            batch.append(key)
            if len(batch) >= _BATCH:
                removed += await self.client.delete(*batch)
                batch = []
        if batch:
            removed += await self.client.delete(*batch)
        return removed

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
