"""What every response-cache backend offers, and how entries are addressed.

Contract of `CacheBackend`:
    * `get(slot)` returns the bytes stored for the slot, or None (missing or expired).
    * `put(slot, value, ttl_s)` stores bytes for at most `ttl_s` seconds (best effort: a full memory
      backend evicts, Memcached may drop entries early).
    * `invalidate(target)` removes the matching entries and returns how many it removed;
      `exact_counts` is False for backends that invalidate by generation (the count is then 0).
      `target.tenant` None means every tenant (cross-tenant operators only); otherwise only that
      tenant's entries are touched.
    * Every method may raise on I/O trouble (connection refused, timeout); `ResponseCache` turns that
      into a miss or a skipped store. Values are bytes only.
    * Tenant and model names are never used raw in storage keys or paths: `tag()` hashes them, so
      names with `:`, `*`, `/` or spaces are safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Protocol


def tag(name: str) -> str:
    """A short, storage-safe hash of a tenant or model name (16 hex characters)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one entry lives: its key, and the tenant and model it belongs to (for invalidation)."""

    key: str
    tenant: str
    model: str


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What to remove: one key, a model, a tenant or everything, within `tenant` (None = all)."""

    kind: Literal["key", "model", "tenant", "all"]
    value: str = ""
    tenant: str | None = None


class CacheBackend(Protocol):
    """Bytes storage of cache entries (see the module docstring)."""

    name: str
    exact_counts: bool

    async def get(self, slot: Slot) -> bytes | None:
        """The stored bytes, or None."""

    async def put(self, slot: Slot, value: bytes, ttl_s: float) -> None:
        """Store `value` for at most `ttl_s` seconds."""

    async def invalidate(self, target: Invalidation) -> int:
        """Remove matching entries; the number removed (0 when not exact)."""

    async def aclose(self) -> None:
        """Release connections."""
