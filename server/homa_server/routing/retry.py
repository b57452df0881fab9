"""Which failures are retried, which fall back, which count against a deployment, and how long to wait.

Contract:
    * `is_retryable(exc)`: the same deployment may be asked again. True for 429 (except a billing
      quota), 5xx, connect errors and upstream timeouts — concretely a `GatewayError` marked
      `retryable` whose reason is not the caller's own budget (DEADLINE_EXCEEDED, CANCELLED) nor a
      gateway refusal (OVERLOADED, CIRCUIT_OPEN), or any error carrying `upstream_status` 429 / 5xx.
    * `may_fall_back(exc)`: another deployment may be tried. Everything retryable, plus failures
      specific to one deployment (billing quota, rejected gateway credentials, unknown model, open
      circuit, saturated deployment, protocol errors). Never the caller's own faults (invalid
      request, content filtered, permission denied) nor the call's deadline or cancellation.
    * `is_deployment_failure(exc)`: the outcome counts against the deployment's circuit breaker.
    * `RetryPolicy.delay(...)`: exponential backoff with full jitter, at least the error's
      `retry_after`; None when the wait is not worth it (Retry-After above `max_retry_after_s`) or
      would pass the deadline — the caller then moves to the next candidate at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from homa_server.errors import Code, GatewayError, Reason

#: Reasons that never mean "ask again": the caller's budget or a gateway-side refusal.
_NOT_RETRIED = frozenset(
    {
        Reason.DEADLINE_EXCEEDED,
        Reason.CANCELLED,
        Reason.OVERLOADED,
        Reason.CIRCUIT_OPEN,
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        Reason.UPSTREAM_INVALID_REQUEST,
        Reason.INVALID_REQUEST,
        Reason.CONTENT_FILTERED,
    }
)

#: Failures of one deployment that another deployment may not share.
_FALL_BACK = frozenset(
    {
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        Reason.UPSTREAM_CREDENTIALS_REJECTED,
        Reason.UPSTREAM_NOT_FOUND,
        Reason.UPSTREAM_PROTOCOL_ERROR,
        Reason.MODEL_NOT_FOUND,
        Reason.PROVIDER_NOT_FOUND,
        Reason.CAPABILITY_NOT_SUPPORTED,
        Reason.OVERLOADED,
        Reason.CIRCUIT_OPEN,
    }
)

#: Outcomes that say nothing about a deployment's health.
_NOT_A_DEPLOYMENT_FAILURE = frozenset(
    {
        Reason.DEADLINE_EXCEEDED,
        Reason.CANCELLED,
        Reason.OVERLOADED,
        Reason.CIRCUIT_OPEN,
        Reason.INVALID_REQUEST,
        Reason.UPSTREAM_INVALID_REQUEST,
        Reason.CONTENT_FILTERED,
        Reason.CONTEXT_LENGTH_EXCEEDED,
        Reason.PERMISSION_DENIED,
        Reason.MODEL_NOT_FOUND,
    }
)


def _upstream_status(exc: GatewayError) -> int:
    try:
        return int(exc.metadata.get("upstream_status", "0"))
    except ValueError:
        return 0


def is_retryable(exc: BaseException) -> bool:
    """Whether the same deployment may be asked again after `exc` (see the module docstring)."""
    if not isinstance(exc, GatewayError) or exc.reason in _NOT_RETRIED:
        return False
    status = _upstream_status(exc)
    return exc.retryable or status == 429 or status >= 500


def may_fall_back(exc: BaseException) -> bool:
    """Whether another candidate deployment may be tried after `exc`."""
    if not isinstance(exc, GatewayError):
        return False
    return exc.reason in _FALL_BACK or is_retryable(exc)


def is_deployment_failure(exc: BaseException) -> bool:
    """Whether `exc` counts against the deployment's circuit breaker.

    Unexpected exceptions count (an adapter bug is a broken deployment too); `CancelledError`,
    caller errors and the call's own deadline do not.
    """
    if not isinstance(exc, Exception):
        return False
    if not isinstance(exc, GatewayError):
        return True
    if exc.reason in _NOT_A_DEPLOYMENT_FAILURE:
        return False
    return exc.code in (Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED, Code.DEADLINE_EXCEEDED, Code.INTERNAL)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for retries of one deployment.

    Args:
        max_attempts: attempts on one deployment, the first included (1 = never retry).
        base_delay_s: backoff scale: retry n waits uniform [0, min(max_delay_s, base * 2**(n-1))].
        max_delay_s: backoff cap.
        max_retry_after_s: longest Retry-After worth waiting for.
    """

    max_attempts: int = 1
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    max_retry_after_s: float = 0.5

    def delay(
        self,
        retry: int,
        error: BaseException,
        remaining: float | None,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before retry number `retry` (1 = the first retry), or None not to retry.

        Args:
            retry: 1-based retry number on this deployment.
            error: the failure being retried (its `retry_after` is a lower bound).
            remaining: seconds left before the call's deadline, or None.
            rng: jitter source (seeded in tests).
        """
        if retry >= self.max_attempts or not is_retryable(error):
            return None
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (retry - 1)))
        wait = rng.uniform(0.0, cap)
        after = error.retry_after if isinstance(error, GatewayError) else None
        if after is not None:
            if after > self.max_retry_after_s:
                return None
            wait = max(wait, after)
        if remaining is not None and wait >= remaining:
            return None
        return wait
