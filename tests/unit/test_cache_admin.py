"""AdminService.InvalidateCache logic (rpc/admin_cache.py) called directly: targets, tenant isolation,
model normalisation, the Memcached generation answer, audit events. The gRPC path is covered in
tests/rpc/test_cache_rpc.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.app import Gateway
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError
from homa_server.observability.call_state import CallState, current_call
from homa_server.policy.cache.backends.base import Slot
from homa_server.policy.cache.backends.memcached import MemcachedBackend
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.models import cache_model
from homa_server.policy.cache.service import ResponseCache
from homa_server.rpc.admin_cache import CacheAdmin
from homa_server.settings import CacheSettings
from homa_server.store.records import OUTCOME_SUCCESS, MemoryRecorder
from tests.conftest import make_settings

KEY_A = "a" * 64
KEY_B = "b" * 64


def as_caller(tenant: str, cross_tenant: bool = False) -> Any:
    scopes = {"admin:write"} | ({"tenants:all"} if cross_tenant else set())
    state = CallState(request_id="req-9", method="/homa.admin.v1.AdminService/InvalidateCache")
    state.principal = Principal(
        subject=f"ops@{tenant}", tenant=tenant, scopes=frozenset(scopes), method="jwt"
    )
    return current_call.set(state)


@pytest.fixture
def caller() -> Iterator[None]:
    token = as_caller("acme")
    yield
    current_call.reset(token)


@pytest.fixture
def operator() -> Iterator[None]:
    token = as_caller("ops", cross_tenant=True)
    yield
    current_call.reset(token)


class World:
    def __init__(self, backend: Any = None) -> None:
        gateway = Gateway.from_settings(
            make_settings(providers={"mock": {"kind": "mock", "models": ["echo"]}})
        )
        self.cache = ResponseCache(backend or MemoryBackend(100, 1 << 20), CacheSettings(enabled=True))
        self.recorder = MemoryRecorder()
        self.fake = SimpleNamespace(
            cache=self.cache, resolver=gateway.resolver, outbox=self.recorder, settings=gateway.settings
        )
        self.admin = CacheAdmin(self.fake)  # type: ignore[arg-type]

    async def fill(self) -> None:
        for slot in (
            Slot(KEY_A, "acme", "mock/echo"),
            Slot(KEY_B, "globex", "mock/echo"),
            Slot("c" * 64, "acme", "mock/other"),
        ):
            await self.cache.backend.put(slot, b"x", 60)

    async def invalidate(self, **target: Any) -> admin_pb2.InvalidateCacheResponse:
        return await self.admin.InvalidateCache(admin_pb2.InvalidateCacheRequest(**target), None)  # type: ignore[arg-type]

    async def present(self) -> set[str]:
        found = set()
        for slot in (
            Slot(KEY_A, "acme", "mock/echo"),
            Slot(KEY_B, "globex", "mock/echo"),
            Slot("c" * 64, "acme", "mock/other"),
        ):
            if await self.cache.backend.get(slot) is not None:
                found.add(slot.key[0])
        return found


async def test_tenant_caller_only_touches_its_own_entries(caller: None) -> None:
    world = World()
    await world.fill()
    assert (await world.invalidate(cache_key=KEY_B)).removed_count == 0  # globex's key
    assert (await world.invalidate(model="mock/echo")).removed_count == 1
    assert await world.present() == {"b", "c"}
    assert (await world.invalidate(all=True)).removed_count == 1
    assert await world.present() == {"b"}
    with pytest.raises(GatewayError) as caught:
        await world.invalidate(tenant="globex")
    assert caught.value.code == Code.PERMISSION_DENIED
    assert (await world.invalidate(tenant="acme")).exact


async def test_operator_spans_tenants(operator: None) -> None:
    world = World()
    await world.fill()
    response = await world.invalidate(cache_key=KEY_B.upper())
    assert (response.removed_count, response.exact) == (1, True)
    assert (await world.invalidate(tenant="acme")).removed_count == 2
    assert await world.present() == set()
    await world.fill()
    assert (await world.invalidate(model="echo")).removed_count == 2  # resolved to mock/echo
    assert (await world.invalidate(all=True)).removed_count == 1
    [*_, last] = world.recorder.audit_records
    assert (last.action, last.outcome, last.details["removed_count"]) == (
        "cache.invalidate",
        OUTCOME_SUCCESS,
        1,
    )


@pytest.mark.parametrize(
    ("target", "field"),
    [({}, "target"), ({"all": False}, "all"), ({"cache_key": ""}, "cache_key"), ({"tenant": ""}, "tenant")],
)
async def test_bad_targets_are_invalid_argument(caller: None, target: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayError) as caught:
        await World().invalidate(**target)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.field_violations[0].field == field


async def test_memcached_answers_inexact(operator: None) -> None:
    world = World(MemcachedBackend("127.0.0.1:11211", f"test-{uuid.uuid4().hex[:12]}", 2.0))
    try:
        await world.fill()
        response = await world.invalidate(model="mock/echo")
        assert (response.removed_count, response.exact) == (0, False)
        assert await world.present() == {"c"}
        assert (await world.invalidate(cache_key="c" * 64)).removed_count == 1
    finally:
        await world.cache.aclose()


async def test_disabled_cache_removes_nothing(caller: None) -> None:
    world = World()
    world.fake.cache = None
    response = await world.invalidate(all=True)
    assert (response.removed_count, response.exact) == (0, True)


def test_cache_model_normalisation() -> None:
    resolver = World().fake.resolver
    assert cache_model({}, resolver, "mock/echo") == "mock/echo"
    assert cache_model({}, resolver, "echo") == "mock/echo"
    assert cache_model({}, resolver, "nobody/serves-this") == "nobody/serves-this"
    assert cache_model({"smart": None}, resolver, "smart") == "smart"
