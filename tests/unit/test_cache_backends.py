"""Response-cache backends with the same contract: memory, Redis (real server), Memcached (real server)
and filesystem. Redis and Memcached tests use a unique namespace per test; both servers are started
by .ci/run and must be up (these tests never skip)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homa_server.policy.cache.backends.base import CacheBackend, Invalidation, Slot
from homa_server.policy.cache.backends.filesystem import FilesystemBackend
from homa_server.policy.cache.backends.memcached import MemcachedBackend
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.backends.redis import RedisBackend

REDIS_URL = "redis://127.0.0.1:6379/0"
MEMCACHED = "127.0.0.1:11211"
KINDS = ["memory", "redis", "memcached", "filesystem"]


def make_backend(kind: str, tmp_path: Path) -> CacheBackend:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        return RedisBackend(REDIS_URL, namespace, timeout_s=2.0)
    if kind == "memcached":
        return MemcachedBackend(MEMCACHED, namespace, timeout_s=2.0)
    if kind == "filesystem":
        return FilesystemBackend(tmp_path / "cache")
    return MemoryBackend(max_entries=1000, max_bytes=1 << 20)


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    made = make_backend(request.param, tmp_path)
    try:
        yield made
    finally:
        await made.invalidate(Invalidation("all"))
        await made.aclose()


def slot(n: int, tenant: str = "acme", model: str = "mock/echo") -> Slot:
    return Slot(f"{n:064x}", tenant, model)


async def test_put_then_get_returns_the_same_bytes(backend: CacheBackend) -> None:
    value = b"\x00\x01binary\xff" * 10
    assert await backend.get(slot(1)) is None
    await backend.put(slot(1), value, 60)
    assert await backend.get(slot(1)) == value
    await backend.put(slot(1), b"newer", 60)
    assert await backend.get(slot(1)) == b"newer"


async def test_same_key_in_two_tenants_are_two_entries(backend: CacheBackend) -> None:
    await backend.put(slot(1, tenant="acme"), b"acme", 60)
    await backend.put(slot(2, tenant="globex"), b"globex", 60)
    assert await backend.get(slot(1, tenant="acme")) == b"acme"
    assert await backend.get(slot(2, tenant="globex")) == b"globex"
    assert await backend.get(slot(1, tenant="globex")) is None


async def test_invalidate_by_key(backend: CacheBackend) -> None:
    await backend.put(slot(1), b"one", 60)
    await backend.put(slot(2), b"two", 60)
    removed = await backend.invalidate(Invalidation("key", slot(1).key, None))
    assert removed == 1
    assert await backend.get(slot(1)) is None
    assert await backend.get(slot(2)) == b"two"


async def test_invalidate_by_key_is_confined_to_the_callers_tenant(backend: CacheBackend) -> None:
    await backend.put(slot(1, tenant="acme"), b"one", 60)
    assert await backend.invalidate(Invalidation("key", slot(1).key, "globex")) == 0
    assert await backend.get(slot(1, tenant="acme")) == b"one"
    assert await backend.invalidate(Invalidation("key", slot(1).key, "acme")) == 1
    assert await backend.get(slot(1, tenant="acme")) is None


async def test_invalidate_by_model(backend: CacheBackend) -> None:
    await backend.put(slot(1, model="a/x"), b"1", 60)
    await backend.put(slot(2, model="b/y"), b"2", 60)
    await backend.put(slot(3, tenant="globex", model="a/x"), b"3", 60)
    removed = await backend.invalidate(Invalidation("model", "a/x", None))
    assert removed == (2 if backend.exact_counts else 0)
    assert await backend.get(slot(1, model="a/x")) is None
    assert await backend.get(slot(3, tenant="globex", model="a/x")) is None
    assert await backend.get(slot(2, model="b/y")) == b"2"


async def test_invalidate_by_model_within_a_tenant(backend: CacheBackend) -> None:
    await backend.put(slot(1, model="a/x"), b"1", 60)
    await backend.put(slot(2, tenant="globex", model="a/x"), b"2", 60)
    await backend.invalidate(Invalidation("model", "a/x", "acme"))
    assert await backend.get(slot(1, model="a/x")) is None
    assert await backend.get(slot(2, tenant="globex", model="a/x")) == b"2"


async def test_invalidate_by_tenant(backend: CacheBackend) -> None:
    await backend.put(slot(1, tenant="acme"), b"1", 60)
    await backend.put(slot(2, tenant="acme", model="b/y"), b"2", 60)
    await backend.put(slot(3, tenant="globex"), b"3", 60)
    removed = await backend.invalidate(Invalidation("tenant", "acme", None))
    assert removed == (2 if backend.exact_counts else 0)
    assert await backend.get(slot(1, tenant="acme")) is None
    assert await backend.get(slot(2, tenant="acme", model="b/y")) is None
    assert await backend.get(slot(3, tenant="globex")) == b"3"
    # a tenant-confined caller naming another tenant removes nothing
    assert await backend.invalidate(Invalidation("tenant", "globex", "acme")) == 0
    assert await backend.get(slot(3, tenant="globex")) == b"3"


async def test_invalidate_all(backend: CacheBackend) -> None:
    await backend.put(slot(1, tenant="acme"), b"1", 60)
    await backend.put(slot(2, tenant="globex"), b"2", 60)
    removed = await backend.invalidate(Invalidation("all", "", None))
    assert removed == (2 if backend.exact_counts else 0)
    assert await backend.get(slot(1, tenant="acme")) is None
    assert await backend.get(slot(2, tenant="globex")) is None


async def test_invalidate_all_within_a_tenant(backend: CacheBackend) -> None:
    await backend.put(slot(1, tenant="acme"), b"1", 60)
    await backend.put(slot(2, tenant="globex"), b"2", 60)
    await backend.invalidate(Invalidation("all", "", "acme"))
    assert await backend.get(slot(1, tenant="acme")) is None
    assert await backend.get(slot(2, tenant="globex")) == b"2"


async def test_entries_written_after_an_invalidation_are_served(backend: CacheBackend) -> None:
    await backend.put(slot(1), b"old", 60)
    await backend.invalidate(Invalidation("tenant", "acme", None))
    await backend.put(slot(1), b"new", 60)
    assert await backend.get(slot(1)) == b"new"


async def test_odd_tenant_and_model_names_are_safe(backend: CacheBackend) -> None:
    odd = Slot(f"{7:064x}", "a:b*/ c\n", "../../etc/passwd")
    await backend.put(odd, b"odd", 60)
    assert await backend.get(odd) == b"odd"
    await backend.invalidate(Invalidation("model", "../../etc/passwd", None))
    assert await backend.get(odd) is None


@pytest.mark.parametrize("kind", ["memory", "redis", "filesystem"])
async def test_glob_characters_in_a_key_match_nothing(kind: str, tmp_path: Path) -> None:
    made = make_backend(kind, tmp_path)
    try:
        await made.put(slot(1), b"1", 60)
        assert await made.invalidate(Invalidation("key", "*", None)) == 0
        assert await made.get(slot(1)) == b"1"
    finally:
        await made.invalidate(Invalidation("all"))
        await made.aclose()


async def test_filesystem_expiry_and_atomic_layout(tmp_path: Path) -> None:
    made = FilesystemBackend(tmp_path / "cache")
    await made.put(slot(1), b"short", 0.0)
    assert await made.get(slot(1)) is None  # expired at once, and removed
    await made.put(slot(2), b"kept", 60)
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert files == [f"{slot(2).key}.entry"]  # no temporary files left behind
    mode = next(p for p in (tmp_path / "cache").rglob("*.entry")).stat().st_mode & 0o777
    assert mode == 0o600


async def test_memory_backend_is_bounded_lru() -> None:
    made = MemoryBackend(max_entries=2, max_bytes=1 << 20)
    await made.put(slot(1), b"1", 60)
    await made.put(slot(2), b"2", 60)
    assert await made.get(slot(1)) == b"1"  # 1 is now the most recently used
    await made.put(slot(3), b"3", 60)
    assert len(made) == 2
    assert await made.get(slot(2)) is None
    assert await made.get(slot(1)) == b"1"
    by_bytes = MemoryBackend(max_entries=100, max_bytes=1 << 20)
    await by_bytes.put(slot(1), b"x" * 600_000, 60)
    await by_bytes.put(slot(2), b"y" * 600_000, 60)
    assert await by_bytes.get(slot(1)) is None
    assert await by_bytes.get(slot(2)) == b"y" * 600_000
    await made.aclose()
    await by_bytes.aclose()


async def test_memcached_generation_survives_a_lost_counter() -> None:
    made = MemcachedBackend(MEMCACHED, f"test-{uuid.uuid4().hex[:12]}", timeout_s=2.0)
    try:
        await made.put(slot(1), b"1", 60)
        await made._cache.delete(f"{made._ns}:g:all")  # as if Memcached had evicted the counter
        assert await made.get(slot(1)) is None
        await made.put(slot(1), b"again", 60)
        assert await made.get(slot(1)) == b"again"
    finally:
        await made.aclose()


async def test_redis_entries_have_a_ttl() -> None:
    made = RedisBackend(REDIS_URL, f"test-{uuid.uuid4().hex[:12]}", timeout_s=2.0)
    try:
        await made.put(slot(1), b"1", 30)
        keys = [k async for k in made.client.scan_iter(match=f"{made._prefix}*")]
        assert len(keys) == 1
        ttl_ms = await made.client.pttl(keys[0])
        assert 0 < ttl_ms <= 30_000
    finally:
        await made.invalidate(Invalidation("all"))
        await made.aclose()
