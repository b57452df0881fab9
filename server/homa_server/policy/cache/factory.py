"""Build the response cache from settings.

Contract: `build_cache(settings)` returns a `ResponseCache` over the configured backend (memory by
default), or None when `cache.enabled` is false. Nothing connects here: Redis and Memcached connect
on first use, so a server starts even while they are down (their operations then miss). The
semantic cache is built only when `cache.semantic.enabled` and an embedder is configured.

Raises (from `build_cache`):
    ValueError / ImportError: `cache.semantic.embedder` cannot be loaded.
"""

from __future__ import annotations

import logging

from homa_server.policy.cache.backends.base import CacheBackend
from homa_server.policy.cache.backends.filesystem import FilesystemBackend
from homa_server.policy.cache.backends.memcached import MemcachedBackend
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.backends.redis import RedisBackend
from homa_server.policy.cache.semantic import SemanticCache, load_embedder
from homa_server.policy.cache.service import ResponseCache
from homa_server.settings import Settings

log = logging.getLogger("homa.cache")


def build_backend(settings: Settings) -> CacheBackend:
    """The backend named by `cache.backend`."""
    cache = settings.cache
    if cache.backend == "redis":
        return RedisBackend(cache.redis_url, cache.namespace, cache.timeout_s)
    if cache.backend == "memcached":
        return MemcachedBackend(cache.memcached, cache.namespace, cache.timeout_s)
    if cache.backend == "filesystem":
        return FilesystemBackend(cache.directory or settings.storage.data_dir / "cache")
    return MemoryBackend(cache.memory_max_entries, cache.memory_max_bytes)


def build_cache(settings: Settings) -> ResponseCache | None:
    """The process's response cache, or None when disabled (see the module docstring)."""
    cache = settings.cache
    if not cache.enabled:
        return None
    semantic = None
    if cache.semantic.enabled:
        if cache.semantic.embedder:
            semantic = SemanticCache(
                load_embedder(cache.semantic.embedder),
                cache.semantic.threshold,
                cache.semantic.max_entries,
                cache.ttl_s,
            )
        else:
            log.warning("cache.semantic.enabled without cache.semantic.embedder: semantic cache off")
    return ResponseCache(build_backend(settings), cache, semantic)
