"""Retry classification and backoff with full jitter (seeded randomness, no sleeping)."""

from __future__ import annotations

import asyncio
import random

import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.routing.retry import RetryPolicy, is_deployment_failure, is_retryable, may_fall_back


def _err(code: Code, reason: Reason, retryable: bool = False, **kw: object) -> GatewayError:
    return GatewayError("x", code, reason, retryable=retryable, **kw)  # type: ignore[arg-type]


UNAVAILABLE = _err(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True)
RATE_LIMITED = _err(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, retry_after=0.3)
TIMEOUT = _err(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True)
QUOTA = _err(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED)
INVALID = _err(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST)
DEADLINE = _err(Code.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, True)
SERVER_500 = _err(Code.INTERNAL, Reason.UPSTREAM_ERROR, metadata={"upstream_status": "500"})


@pytest.mark.parametrize(
    ("error", "retry", "fall_back", "counts"),
    [
        (UNAVAILABLE, True, True, True),
        (RATE_LIMITED, True, True, True),
        (TIMEOUT, True, True, True),
        (SERVER_500, True, True, True),
        (QUOTA, False, True, True),
        (INVALID, False, False, False),
        (DEADLINE, False, False, False),
        (_err(Code.RESOURCE_EXHAUSTED, Reason.OVERLOADED, True), False, True, False),
        (_err(Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED), False, False, False),
        (_err(Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED), False, True, True),
        (RuntimeError("adapter bug"), False, False, True),
    ],
)
def test_classification(error: BaseException, retry: bool, fall_back: bool, counts: bool) -> None:
    assert is_retryable(error) is retry
    assert may_fall_back(error) is fall_back
    assert is_deployment_failure(error) is counts


def test_cancellation_is_never_a_deployment_failure() -> None:
    assert not is_deployment_failure(asyncio.CancelledError())


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=1.0, max_retry_after_s=5)
    rng = random.Random(7)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (8, 1.0)]:
        samples = [policy.delay(retry, UNAVAILABLE, None, rng) for _ in range(300)]
        assert all(s is not None and 0.0 <= s <= cap for s in samples)
        assert max(s for s in samples if s is not None) > cap * 0.8  # spread over the whole range
        assert min(s for s in samples if s is not None) < cap * 0.2


def test_no_retry_past_max_attempts_or_for_non_retryable() -> None:
    policy = RetryPolicy(max_attempts=2)
    rng = random.Random(1)
    assert policy.delay(1, UNAVAILABLE, None, rng) is not None
    assert policy.delay(2, UNAVAILABLE, None, rng) is None
    assert policy.delay(1, INVALID, None, rng) is None
    assert RetryPolicy(max_attempts=1).delay(1, UNAVAILABLE, None, rng) is None


def test_retry_after_is_a_lower_bound_and_bounded() -> None:
    rng = random.Random(3)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_retry_after_s=0.5)
    assert policy.delay(1, RATE_LIMITED, None, rng) == pytest.approx(0.3)
    too_long = _err(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, retry_after=2.0)
    assert policy.delay(1, too_long, None, rng) is None


def test_never_waits_past_the_deadline() -> None:
    rng = random.Random(3)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_retry_after_s=5)
    assert policy.delay(1, RATE_LIMITED, 0.2, rng) is None  # Retry-After 0.3 s > 0.2 s left
    assert policy.delay(1, RATE_LIMITED, 0.31, rng) == pytest.approx(0.3)
