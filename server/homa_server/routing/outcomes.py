"""What the attempt loop records: attempts, their leases on a deployment, and how a call failed.

Contract:
    * `Attempt`: one call of one deployment, numbered from 1 across the whole call; `route()` is the
      `route` event / response field naming it.
    * `Lease`: what an attempt holds (admission slot, breaker permit, in-flight count) until
      `close(error)`, which releases everything and gives the breaker its verdict (success, a failure
      that counts per `routing/retry.py:is_deployment_failure`, or no verdict); idempotent.
    * `AttemptLog.combined(last)`: the error ending a failed call. With a single failure, that
      failure unchanged; otherwise one GatewayError with the last failure's status, reason, RetryInfo
      and details, whose message and metadata (`attempts`, `attempt_<n>`, `skipped_<i>`) list each
      attempt's deployment and reason. Messages are the errors' own (never message contents).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from homa.type.v1 import usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import set_trailer
from homa_server.routing.admission import Slot
from homa_server.routing.balancer import DeploymentStats
from homa_server.routing.breaker import CircuitBreaker, LastError, Permit
from homa_server.routing.retry import is_deployment_failure
from homa_server.routing.routes import Deployment

#: Told of every attempt as it starts (usage metering follows the serving deployment with it).
OnAttempt = Callable[["Attempt"], None]
_MAX_REASON_CHARS = 200


def deadline_error(what: str = "deadline") -> GatewayError:
    """DEADLINE_EXCEEDED for the call's own budget."""
    return GatewayError(f"{what} exceeded", Code.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, retryable=True)


def first_token_timeout(key: str) -> GatewayError:
    """An attempt's time to first token ran out (falls back to the next candidate)."""
    return GatewayError(
        f"time to first token exceeded on {key}",
        Code.DEADLINE_EXCEEDED,
        Reason.UPSTREAM_TIMEOUT,
        retryable=True,
        metadata={"deployment": key},
    )


def circuit_open(key: str, retry_in: float) -> GatewayError:
    """UNAVAILABLE / CIRCUIT_OPEN for a deployment refusing calls."""
    return GatewayError(
        f"circuit breaker of {key} is open",
        Code.UNAVAILABLE,
        Reason.CIRCUIT_OPEN,
        retryable=True,
        retry_after=retry_in,
        metadata={"deployment": key},
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call of one deployment; `number` is 1-based across the whole call."""

    number: int
    deployment: Deployment

    def route(self) -> usage_pb2.Route:
        """The `route` event / response field for this attempt."""
        return usage_pb2.Route(
            provider=self.deployment.provider.name, model=self.deployment.model, attempt=self.number
        )


@dataclass(frozen=True, slots=True)
class _Failure:
    number: int  # 0 = skipped without calling
    key: str
    reason: str
    message: str


def _reason_of(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, GatewayError):
        return str(exc.reason), exc.message[:_MAX_REASON_CHARS]
    return "INTERNAL", type(exc).__name__


class Lease:
    """What an attempt holds (admission slot, breaker permit, in-flight count) until `close`."""

    def __init__(
        self, attempt: Attempt, breaker: CircuitBreaker, permit: Permit, slot: Slot, stats: DeploymentStats
    ) -> None:
        self.attempt = attempt
        self._breaker, self._permit, self._slot, self._stats = breaker, permit, slot, stats
        self._started = time.monotonic()
        self._closed = False
        stats.inflight += 1

    def first_output(self) -> None:
        """The attempt produced its answer (or first event): note its latency."""
        self._stats.observe_latency(time.monotonic() - self._started)

    def close(self, error: BaseException | None) -> None:
        """Release everything and record the outcome in the breaker; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stats.inflight -= 1
        self._slot.release()
        if error is None:
            self._breaker.success(self._permit)
        elif is_deployment_failure(error):
            reason, message = _reason_of(error)
            status = error.metadata.get("upstream_status", "0") if isinstance(error, GatewayError) else "0"
            self._breaker.failure(
                self._permit, LastError(time.time(), reason, message, int(status) if status.isdigit() else 0)
            )
        else:
            self._breaker.release(self._permit)


class AttemptLog:
    """Attempt numbers and failures of one call; builds the error that ends a failed call."""

    def __init__(self, on_attempt: OnAttempt | None) -> None:
        self.failures: list[_Failure] = []
        self.last: BaseException | None = None
        self.number = 0
        self._on_attempt = on_attempt

    def start(self, deployment: Deployment) -> Attempt:
        """A new attempt: numbered, announced in the trailers and to `on_attempt`."""
        self.number += 1
        set_trailer("homa-provider", deployment.provider.name)
        set_trailer("homa-model", deployment.model)
        set_trailer("homa-attempts", str(self.number))
        attempt = Attempt(self.number, deployment)
        if self._on_attempt is not None:
            self._on_attempt(attempt)
        return attempt

    def skip(self, key: str, error: GatewayError) -> None:
        """A candidate skipped without a call (open circuit, shed by admission)."""
        self.failures.append(_Failure(0, key, str(error.reason), error.message))
        self.last = error

    def fail(self, key: str, error: BaseException) -> None:
        """The current attempt failed with `error`."""
        reason, message = _reason_of(error)
        self.failures.append(_Failure(self.number, key, reason, message))
        self.last = error

    def combined(self, last: BaseException | None) -> BaseException:
        """The error ending the call (see the module docstring)."""
        if last is None:
            return GatewayError("no deployment could be tried", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
        failures = self.failures
        if not failures or (len(failures) == 1 and last is self.last):
            return last
        base = last if isinstance(last, GatewayError) else GatewayError("internal error")
        metadata = dict(base.metadata)
        metadata["attempts"] = str(self.number)
        lines = []
        for i, f in enumerate(failures, 1):
            metadata[f"attempt_{f.number}" if f.number else f"skipped_{i}"] = f"{f.key} {f.reason}"
            lines.append(f"{f.number or '-'} {f.key}: {f.reason} ({f.message})")
        if last is not self.last:
            lines.append(f"then {_reason_of(last)[0]}")
        return GatewayError(
            f"no candidate answered after {self.number} attempts: " + "; ".join(lines),
            base.code,
            base.reason,
            retryable=base.retryable,
            retry_after=base.retry_after,
            metadata=metadata,
            field_violations=base.field_violations,
            quota_violations=base.quota_violations,
        )
