"""Homa API keys: secret format, the verifier (shape check, cache, expiry, last use), globs, fields."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import replace

import pytest
from google.protobuf import timestamp_pb2

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.auth.api_keys import (
    ApiKeyVerifier,
    generate_secret,
    hash_secret,
    is_well_formed,
    principal_of,
    secret_prefix,
)
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.rpc.admin_keys import BASE_SCOPES
from homa_server.rpc.api_key_fields import SETTABLE, mask_plan, read_fields
from homa_server.store.api_keys import STATE_ACTIVE, STATE_EXPIRED, STATE_REVOKED, StoredKey, to_proto
from homa_server.store.database import now_us

HOSTILE = [
    "homa_sk_' OR '1'='1",
    "homa_sk_' OR '1'='1' --" + "a" * 20,
    "homa_sk_" + "a" * 21 + "\x00" + "a" * 21,
    "homa_sk_" + "a" * 16384,
    "homa_sk_" + "a" * 42,
    "homa_sk_" + "a" * 44,
    "homa_sk_" + "a" * 42 + "=",
    "homa_pk_" + "a" * 43,
    "HOMA_SK_" + "a" * 43,
    "",
    "homa_sk_" + "é" * 43,
    "homa_sk_" + "a" * 42 + "\n",
]


class FakeStore:
    """An in-memory KeyStore counting every query."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.lookups = 0
        self.touches: list[tuple[str, int]] = []
        self.fail_lookups = False
        self.fail_touch = False
        self.touched = asyncio.Event()

    def add(self, **overrides: object) -> str:
        secret = generate_secret()
        now = now_us()
        key = StoredKey(
            api_key_id=f"key_{len(self.keys)}",
            tenant="acme",
            secret_hash=hash_secret(secret),
            secret_prefix=secret_prefix(secret),
            create_time_us=now,
            update_time_us=now,
            scopes=["chat:write"],
        )
        self.keys[key.secret_hash] = replace(key, **overrides)  # type: ignore[arg-type]
        return secret

    async def find_by_hash(self, secret_hash: str) -> StoredKey | None:
        self.lookups += 1
        if self.fail_lookups:
            raise OSError("database down")
        return self.keys.get(secret_hash)

    async def touch(self, api_key_id: str, when_us: int) -> None:
        self.touches.append((api_key_id, when_us))
        self.touched.set()
        if self.fail_touch:
            raise OSError("database down")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _verifier(store: FakeStore, clock: Clock | None = None, **kwargs: float) -> ApiKeyVerifier:
    return ApiKeyVerifier(store, clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


async def _rejected(verifier: ApiKeyVerifier, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    return info.value


def test_secret_format_hash_and_prefix() -> None:
    secret = generate_secret()
    assert re.fullmatch(r"homa_sk_[A-Za-z0-9_-]{43}", secret)
    assert is_well_formed(secret)
    assert hash_secret(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert secret_prefix(secret) == secret[:12]
    assert secret_prefix(secret).startswith("homa_sk_")
    assert len({generate_secret() for _ in range(100)}) == 100


@pytest.mark.parametrize("token", HOSTILE)
async def test_malformed_tokens_never_reach_the_store(token: str) -> None:
    store = FakeStore()
    store.add()
    error = await _rejected(_verifier(store), token)
    assert error.code is Code.UNAUTHENTICATED
    assert error.reason == Reason.INVALID_CREDENTIALS
    assert store.lookups == 0


async def test_valid_key_gives_its_principal_and_is_cached() -> None:
    store = FakeStore()
    secret = store.add(allowed_models=["openai/*"], expire_time_us=now_us() + 60_000_000)
    verifier = _verifier(store)
    principal = await verifier.verify(secret)
    assert principal.subject == principal.key_id == "key_0"
    assert principal.tenant == "acme"
    assert principal.scopes == {"chat:write"}
    assert principal.method == "api_key"
    assert principal.allowed_models == {"openai/*"}
    assert principal.expires_at is not None
    assert await verifier.verify(secret) == principal
    assert store.lookups == 1


async def test_unknown_keys_are_cached_negatively_by_hash() -> None:
    store = FakeStore()
    verifier = _verifier(store)
    unknown = generate_secret()
    for _ in range(3):
        error = await _rejected(verifier, unknown)
        assert error.reason == Reason.INVALID_CREDENTIALS
    assert store.lookups == 1
    assert unknown not in repr(verifier._cache)  # keyed by hash, never by secret


async def test_cache_expires_after_ttl_and_forget_drops_at_once() -> None:
    store = FakeStore()
    clock = Clock()
    secret = store.add()
    verifier = _verifier(store, clock, cache_ttl_s=2.0)
    await verifier.verify(secret)
    clock.now += 1.9
    await verifier.verify(secret)
    assert store.lookups == 1
    clock.now += 0.2
    await verifier.verify(secret)
    assert store.lookups == 2
    store.keys[hash_secret(secret)] = replace(store.keys[hash_secret(secret)], revoked=True)
    assert (await verifier.verify(secret)).key_id == "key_0"  # another replica's revocation: cached
    verifier.forget(hash_secret(secret))
    assert (await _rejected(verifier, secret)).reason == Reason.INVALID_CREDENTIALS


async def test_cache_is_bounded() -> None:
    store = FakeStore()
    secrets = [store.add() for _ in range(5)]
    verifier = _verifier(store, cache_size=2)
    for secret in secrets:
        await verifier.verify(secret)
    assert len(verifier._cache) == 2
    await verifier.verify(secrets[0])
    assert store.lookups == 6


async def test_revoked_and_expired_keys_are_rejected() -> None:
    store = FakeStore()
    revoked = store.add(revoked=True)
    expired = store.add(expire_time_us=now_us() - 1)
    verifier = _verifier(store)
    for secret in (revoked, expired):
        error = await _rejected(verifier, secret)
        assert (error.code, error.reason, error.message) == (
            Code.UNAUTHENTICATED,
            Reason.INVALID_CREDENTIALS,
            "invalid credentials",
        )


async def test_a_cached_key_stops_working_when_it_expires() -> None:
    store = FakeStore()
    secret = store.add(expire_time_us=now_us() + 200_000)
    verifier = _verifier(store, cache_ttl_s=60)
    await verifier.verify(secret)
    key = store.keys[hash_secret(secret)]
    verifier._cache[key.secret_hash] = (
        verifier._cache[key.secret_hash][0],
        replace(key, expire_time_us=now_us() - 1),
        principal_of(key),
    )
    assert (await _rejected(verifier, secret)).reason == Reason.INVALID_CREDENTIALS


async def test_store_failure_fails_closed() -> None:
    store = FakeStore()
    secret = store.add()
    store.fail_lookups = True
    error = await _rejected(_verifier(store), secret)
    assert error.code is Code.UNAVAILABLE
    assert error.reason == Reason.AUTH_UNAVAILABLE


async def test_last_use_written_once_per_interval_off_the_request_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    clock = Clock()
    secret = store.add()
    verifier = _verifier(store, clock, cache_ttl_s=60, last_use_interval_s=60)
    store.fail_touch = True
    with caplog.at_level(logging.WARNING, logger="homa.auth"):
        await verifier.verify(secret)  # the failing write is not the caller's problem
        await store.touched.wait()
        await verifier.aclose()
    assert "could not record API key use" in caplog.text
    assert secret not in caplog.text
    await verifier.verify(secret)
    clock.now += 30
    await verifier.verify(secret)
    await verifier.aclose()
    assert len(store.touches) == 1
    clock.now += 31
    await verifier.verify(secret)
    await verifier.aclose()
    assert [key_id for key_id, _ in store.touches] == ["key_0", "key_0"]


def test_may_use_model_accepts_candidates_and_globs() -> None:
    p = Principal(
        "k", "t", frozenset(), "api_key", allowed_models=frozenset({"openai/*", "mock/echo", "gpt-4?"})
    )
    assert p.may_use_model("openai/gpt-4o")
    assert p.may_use_model("alias", "gpt-4o", "openai/gpt-4o")
    assert p.may_use_model("mock/echo")
    assert p.may_use_model("gpt-41")
    assert not p.may_use_model("gpt-4")
    assert not p.may_use_model("mock/tool", "tool")
    assert not p.may_use_model("OPENAI/gpt-4o")
    assert not p.may_use_model("")
    assert not Principal("k", "t", frozenset(), "api_key", allowed_models=frozenset({"[a]*"})).may_use_model(
        "a1"
    )
    assert Principal("k", "t", frozenset(), "api_key").may_use_model("anything")


def _fields(**kwargs: object) -> admin_pb2.ApiKey:
    return admin_pb2.ApiKey(**kwargs)  # type: ignore[arg-type]


def _violations(error: GatewayError) -> dict[str, str]:
    return {v.field: v.description for v in error.field_violations}


def test_read_fields_reports_every_problem() -> None:
    past = timestamp_pb2.Timestamp(seconds=1)
    message = _fields(
        name="",
        scopes=["chat:write", "chat", "root"],
        allowed_models=["openai/*", "bad glob", "[x]"],
        expire_time=past,
        rate_limits=admin_pb2.RateLimits(requests_per_minute=-1),
        budgets=admin_pb2.Budgets(daily_cost_micros=-5),
        labels={"Team": "x"},
    )
    with pytest.raises(GatewayError) as info:
        read_fields(message, SETTABLE, known_scopes=BASE_SCOPES, now_us=now_us(), require_name=True)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert set(_violations(info.value)) == {
        "api_key.name",
        "api_key.scopes[1]",
        "api_key.scopes[2]",
        "api_key.allowed_models[1]",
        "api_key.allowed_models[2]",
        "api_key.expire_time",
        "api_key.rate_limits.requests_per_minute",
        "api_key.budgets.daily_cost_micros",
        "api_key.labels",
    }


def test_read_fields_values() -> None:
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    message = _fields(
        name="ci",
        scopes=["chat:write", "chat:write", "tenants:all"],
        allowed_models=["openai/*"],
        expire_time=future,
        rate_limits=admin_pb2.RateLimits(tokens_per_minute=0),
        labels={"team": "search"},
    )
    values = read_fields(message, SETTABLE, known_scopes=BASE_SCOPES, now_us=now_us())
    assert values["scopes"] == ["chat:write", "tenants:all"]
    assert values["expire_time_us"] == 4_000_000_000_000_000
    assert values["rate_limits"] == {"tokens_per_minute": 0}
    assert values["budgets"] == {}
    assert values["labels"] == {"team": "search"}


def test_mask_plan() -> None:
    plan = mask_plan(["name", "rate_limits.tokens_per_minute", "labels.team"], _fields())
    assert plan.fields == {"name"}
    assert plan.subfields == {"rate_limits": {"tokens_per_minute"}}
    assert plan.labels == {"team"}
    assert mask_plan([], _fields(owner="o", scopes=["chat:write"])).fields == {"owner", "scopes"}
    for bad in (
        ["tenant"],
        ["secret_prefix"],
        ["state"],
        ["api_key_id"],
        ["rate_limits.nope"],
        ["labels.BAD"],
    ):
        with pytest.raises(GatewayError) as info:
            mask_plan(bad, _fields())
        assert _violations(info.value).keys() == {"update_mask"}
    with pytest.raises(GatewayError):
        mask_plan([], _fields())


def test_state_and_proto_never_carry_the_hash() -> None:
    secret = generate_secret()
    now = now_us()
    key = StoredKey("key_1", "acme", hash_secret(secret), secret_prefix(secret), now, now, name="n")
    assert key.state() == STATE_ACTIVE
    assert replace(key, revoked=True).state() == STATE_REVOKED
    assert replace(key, expire_time_us=now - 1).state() == STATE_EXPIRED
    message = to_proto(key)
    assert message.secret_prefix == secret[:12]
    serialized = message.SerializeToString()
    assert hash_secret(secret).encode() not in serialized
    assert secret.encode() not in serialized
    assert not message.HasField("expire_time")


class GatedStore(FakeStore):
    """Lookups wait until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def find_by_hash(self, secret_hash: str) -> StoredKey | None:
        self.started.set()
        await self.gate.wait()
        return await super().find_by_hash(secret_hash)


async def test_concurrent_misses_share_one_query() -> None:
    store = GatedStore()
    secret = store.add()
    verifier = _verifier(store)
    calls = [asyncio.create_task(verifier.verify(secret)) for _ in range(5)]
    await store.started.wait()
    store.gate.set()
    principals = await asyncio.gather(*calls)
    assert {p.key_id for p in principals} == {"key_0"}
    assert store.lookups == 1


async def test_a_lookup_overtaken_by_a_revocation_is_not_cached() -> None:
    store = GatedStore()
    secret = store.add()
    verifier = _verifier(store, cache_ttl_s=60)
    stale = asyncio.create_task(verifier.verify(secret))
    await store.started.wait()
    digest = hash_secret(secret)
    verifier.forget(digest)  # the key is revoked on this replica while the lookup is in flight
    store.gate.set()
    await stale  # read before the revocation: still accepted once...
    store.keys[digest] = replace(store.keys[digest], revoked=True)
    assert (await _rejected(verifier, secret)).reason == Reason.INVALID_CREDENTIALS  # ...never cached
    assert store.lookups == 2
