"""Limiter semantics on both backends (in-process and Redis at 127.0.0.1:6379, own key prefix per test)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.policy import periods
from homa_server.policy.backends.base import (
    BackendUnavailableError,
    CounterCheck,
    Exceeded,
    LimitBackend,
    RateCheck,
)
from homa_server.policy.backends.memory import MemoryBackend
from homa_server.policy.backends.redis import RedisBackend
from homa_server.policy.limits import Limiter
from homa_server.policy.metered import UsageCapture, settle_with_record
from homa_server.policy.reservation import Reservation, estimate_call
from homa_server.settings import LimitSettings
from homa_server.store.records import MemoryRecorder, UsageRecord

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimitBackend]:
    """Each backend; the Redis one writes under a prefix of its own, removed afterwards."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    prefix = f"test:limits:{uuid.uuid4().hex}:"
    redis_backend = RedisBackend(REDIS_URL, key_prefix=prefix, timeout_s=2.0)
    try:
        yield redis_backend
    finally:
        await redis_backend.aclose()
        async with Redis.from_url(REDIS_URL) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


def _counter(key: str, limit: int, amount: int, reset_in: float = 30.0) -> CounterCheck:
    return CounterCheck(key, f"{key} subject", f"{limit} units", limit, amount, 120, reset_in)


async def test_sliding_window_admits_the_limit_then_frees_up(backend: LimitBackend) -> None:
    check = RateCheck("k:rpm", "k requests_per_minute", "3 requests", 3, window_s=0.4)
    started = time.monotonic()
    for _ in range(3):
        assert await backend.admit(uuid.uuid4().hex, [check], []) == []
    refused = await backend.admit(uuid.uuid4().hex, [check], [])
    assert [e.subject for e in refused] == ["k requests_per_minute"]
    retry = refused[0].retry_after_s
    assert retry is not None
    assert 0 < retry <= 0.4
    await asyncio.sleep(max(0.0, started + 0.45 - time.monotonic()))  # let the window slide past
    assert await backend.admit(uuid.uuid4().hex, [check], []) == []


async def test_checks_are_all_or_nothing(backend: LimitBackend) -> None:
    rate = RateCheck("a:rpm", "a requests_per_minute", "2 requests", 2)
    assert await backend.admit("t1", [rate], [_counter("a:tpm", 100, 60)]) == []
    # The counter refuses: the rate log must not count this attempt either.
    refused = await backend.admit("t2", [rate], [_counter("a:tpm", 100, 60)])
    assert [e.subject for e in refused] == ["a:tpm subject"]
    assert refused[0].retry_after_s == 30.0
    assert await backend.admit("t3", [rate], [_counter("a:tpm", 100, 40)]) == []  # 60 + 40 fits exactly
    refused = await backend.admit("t4", [rate], [_counter("a:tpm", 100, 0)])
    assert [e.subject for e in refused] == ["a requests_per_minute"]


async def test_an_amount_larger_than_the_limit_is_never_retryable(backend: LimitBackend) -> None:
    refused = await backend.admit("t", [], [_counter("big", 10, 11)])
    assert len(refused) == 1
    assert refused[0].retry_after_s is None


async def test_settle_refunds_and_charges_once(backend: LimitBackend) -> None:
    assert await backend.admit("r1", [], [_counter("c", 100, 80)]) == []
    assert await backend.admit("r2", [], [_counter("c", 100, 30)]) != []
    assert await backend.settle("r1", [("c", -50)]) is True  # used 30 of the 80 reserved
    assert await backend.settle("r1", [("c", -50)]) is False  # idempotent
    assert await backend.admit("r2", [], [_counter("c", 100, 70)]) == []  # 30 + 70
    assert await backend.admit("r3", [], [_counter("c", 100, 1)]) != []
    assert await backend.settle("r2", [("c", -1000)]) is True  # never below zero
    assert await backend.admit("r3", [], [_counter("c", 100, 70)]) == []
    assert await backend.settle("r3", [("gone", 5)]) is True  # an expired counter is left alone
    assert await backend.admit("r4", [], [_counter("gone", 5, 5)]) == []
    assert await backend.settle("never-admitted", [("c", -100)]) is False
    assert await backend.settle("r4", [("gone", -5)]) is True
    assert await backend.settle("r4", [("gone", -5)]) is False


def _request(text: str = "hello there", max_output: int | None = 100) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="openai/gpt-4o-mini")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text=text)
    if max_output is not None:
        request.max_output_tokens = max_output
    return request


def _key_principal(**limits: int) -> Principal:
    return Principal(
        subject="key_1",
        tenant="acme",
        scopes=frozenset({"chat:write"}),
        method="api_key",
        key_id="key_1",
        key_limits=tuple(sorted(limits.items())),
    )


def _limiter(backend: LimitBackend, **settings: object) -> Limiter:
    frozen = time.time()  # one UTC minute for the whole test, whenever it runs
    return Limiter(LimitSettings.model_validate(settings), backend, clock=lambda: frozen)


async def _reserve(
    limiter: Limiter, principal: Principal | None, request: chat_pb2.CompleteRequest
) -> Reservation:
    return await limiter.reserve(request, principal, provider="openai", kind="openai", model="gpt-4o-mini")


async def test_concurrent_reservations_never_overshoot_a_token_budget(backend: LimitBackend) -> None:
    request = _request(max_output=100)
    estimate = estimate_call(request, kind="openai", model="gpt-4o-mini", default_max_output=1)
    limit = estimate.tokens * 7 + estimate.tokens // 2
    limiter = _limiter(backend, tenant={"tokens_per_minute": limit})
    principal = _key_principal()
    outcomes = await asyncio.gather(
        *(_reserve(limiter, principal, request) for _ in range(40)), return_exceptions=True
    )
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, GatewayError)]
    assert len(admitted) == 7, "exactly as many as fit, whatever the interleaving"
    assert len(refused) == 33
    assert all(e.reason == Reason.RATE_LIMITED for e in refused)
    # Settling with the real (smaller) usage refunds the difference: more calls fit again.
    for reservation in admitted:
        await reservation.settle(tokens=estimate.input_tokens, cost_micros=0)
        await reservation.settle(tokens=estimate.input_tokens, cost_micros=0)  # no-op
    fits = (limit - 7 * estimate.input_tokens) // estimate.tokens
    assert fits > 0
    again = await asyncio.gather(
        *(_reserve(limiter, principal, request) for _ in range(fits + 5)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in again) == fits


async def test_cost_budget_reserves_and_settles_the_difference(backend: LimitBackend) -> None:
    request = _request(max_output=1000)
    estimate = estimate_call(request, kind="openai", model="gpt-4o-mini", default_max_output=1)
    assert estimate.cost_micros > 0  # 0.60 USD per million output tokens: 600 micro-USD for 1000
    limiter = _limiter(backend)
    principal = _key_principal(daily_cost_micros=estimate.cost_micros * 2, monthly_cost_micros=10**9)
    first = await _reserve(limiter, principal, request)
    second = await _reserve(limiter, principal, request)
    with pytest.raises(GatewayError) as caught:
        await _reserve(limiter, principal, request)
    error = caught.value
    assert (error.code, error.reason) == (Code.RESOURCE_EXHAUSTED, Reason.BUDGET_EXCEEDED)
    assert [v.subject for v in error.quota_violations] == ["key:key_1 daily_cost_micros"]
    assert error.retry_after is not None
    assert abs(error.retry_after - periods.day(time.time())[1]) < 5  # next UTC midnight
    await first.settle(tokens=10, cost_micros=1)  # a tiny call: almost everything refunded
    await second.release()  # failed before any output: all refunded
    await _reserve(limiter, principal, request)  # 1 + estimate
    with pytest.raises(GatewayError):
        await _reserve(limiter, principal, request)  # 1 + 2 x estimate: one micro-USD too many


async def test_quota_failure_lists_every_exceeded_limit(backend: LimitBackend) -> None:
    limiter = _limiter(
        backend,
        tenant={"requests_per_minute": 5},
        tenants={"acme": {"requests_per_minute": 1}},
        models={"openai/gpt-4o-mini": {"requests_per_minute": 1}},
    )
    principal = _key_principal(requests_per_minute=1)
    reservation = await _reserve(limiter, principal, _request())
    assert reservation.settled  # nothing but request counts: nothing to settle
    with pytest.raises(GatewayError) as caught:
        await _reserve(limiter, principal, _request())
    error = caught.value
    assert error.reason == Reason.RATE_LIMITED
    assert sorted(v.subject for v in error.quota_violations) == [
        "key:key_1 requests_per_minute",
        "model:openai/gpt-4o-mini requests_per_minute",
        "tenant:acme requests_per_minute",
    ]
    assert error.retry_after is not None
    assert 55 < error.retry_after <= 60
    assert limiter.stats.admitted == 1
    assert limiter.stats.refused == 1


def test_subjects_merge_defaults_overrides_and_key_limits() -> None:
    limiter = _limiter(
        MemoryBackend(),
        key={"requests_per_minute": 10, "daily_cost_micros": 5},
        tenant={"tokens_per_minute": 100},
        tenants={"acme": {"requests_per_minute": 7}},
        model={"requests_per_minute": 50},
        models={"openai/gpt-4o": {"tokens_per_minute": 9}},
    )
    found = {
        s.name: dict(s.limits)
        for s in limiter.subjects(_key_principal(requests_per_minute=3), "openai/gpt-4o")
    }
    assert found == {
        "key:key_1": {"requests_per_minute": 3, "daily_cost_micros": 5},
        "tenant:acme": {"tokens_per_minute": 100, "requests_per_minute": 7},
        "model:openai/gpt-4o": {"requests_per_minute": 50, "tokens_per_minute": 9},
    }
    jwt_user = Principal(subject="u", tenant="globex", scopes=frozenset(), method="jwt")
    assert {s.name for s in limiter.subjects(jwt_user, "x/y")} == {"tenant:globex", "model:x/y"}
    assert _limiter(MemoryBackend()).subjects(jwt_user, "x/y") == []


async def test_nothing_configured_costs_nothing() -> None:
    limiter = _limiter(MemoryBackend())
    reservation = await _reserve(limiter, _key_principal(), _request())
    assert reservation.settled
    assert reservation.estimate is None  # no token counting without a token or cost limit
    disabled = _limiter(MemoryBackend(), enabled=False, tenant={"requests_per_minute": 1})
    for _ in range(3):
        await _reserve(disabled, _key_principal(), _request())


def test_periods_are_utc_minutes_days_and_months() -> None:
    moment = 1_767_225_599.5  # 2025-12-31T23:59:59.5Z
    assert periods.minute(moment) == (str(int(moment // 60)), 0.5)
    assert periods.day(moment) == ("20251231", 0.5)
    assert periods.month(moment) == ("202512", 0.5)
    assert periods.month(moment + 1)[0] == "202601"


class _DownBackend:
    """A backend whose store is always unreachable."""

    async def admit(self, token: str, rates: object, counters: object) -> list[Exceeded]:
        raise BackendUnavailableError("down")

    async def settle(self, token: str, deltas: object) -> bool:
        raise BackendUnavailableError("down")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_backend_failures_follow_the_policy_warn_once_and_are_counted(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = Limiter(
        LimitSettings.model_validate({"redis_failure": policy, "tenant": {"requests_per_minute": 5}}),
        _DownBackend(),  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.WARNING, logger="homa.limits"):
        for _ in range(5):
            if policy == "open":
                reservation = await _reserve(limiter, _key_principal(), _request())
                assert reservation.settled
            else:
                with pytest.raises(GatewayError) as caught:
                    await _reserve(limiter, _key_principal(), _request())
                assert (caught.value.code, caught.value.reason) == (
                    Code.UNAVAILABLE,
                    Reason.LIMITS_UNAVAILABLE,
                )
                assert caught.value.retryable
    warnings = [r for r in caplog.records if r.name == "homa.limits"]
    assert len(warnings) == 1, "one loud warning per interval, not one per call"
    assert policy in warnings[0].getMessage()
    assert limiter.stats.failures == 5
    assert limiter.stats.failed_open == (5 if policy == "open" else 0)


async def test_usage_capture_forwards_records_and_settles_with_them() -> None:
    recorder = MemoryRecorder()
    capture = UsageCapture(recorder)
    record = UsageRecord(time_us=1, method="chat.Complete", tenant="acme", status="completed")
    capture.usage(replace(record, input_tokens=7, output_tokens=3, cost_micros=2))
    assert recorder.usage_records == [capture.record]
    limiter = _limiter(MemoryBackend(), tenant={"tokens_per_minute": 1000})
    request = _request(max_output=400)
    first = await _reserve(limiter, _key_principal(), request)
    assert first.estimate is not None
    await settle_with_record(first, capture.record)  # 10 tokens really used
    await settle_with_record(first, None)  # already settled: nothing changes
    second = await _reserve(limiter, _key_principal(), request)
    await settle_with_record(second, None)  # no record: the estimate stays charged
    assert second.settled
    third = await _reserve(
        limiter,
        _key_principal(),
        _request(max_output=1000 - 10 - first.estimate.tokens - first.estimate.input_tokens),
    )
    assert third.estimate is not None
    with pytest.raises(GatewayError):
        await _reserve(limiter, _key_principal(), _request(max_output=1))
