"""The Limiter: requests and tokens per minute, daily and monthly cost budgets, reserve -> settle.

Subjects and their limits (settings `limits:`, see docs/routing.md "Rate limits and budgets"):
    * `key:<api_key_id>`: `limits.key` defaults, overridden field by field by the key's own
      `rate_limits` / `budgets` (carried on the Principal as `key_limits`);
    * `tenant:<tenant>`: `limits.tenant` defaults, overridden by `limits.tenants[<tenant>]`;
    * `model:<provider>/<model>`: `limits.model` defaults, overridden by `limits.models[...]`
      (requests and tokens only; a model limit is shared by every tenant).

Contract of `Limiter.reserve(...)`:
    * Every limit that applies is checked and charged in ONE atomic backend operation: one request
      in each sliding minute, the call's estimated tokens (reservation.py) in each UTC-minute token
      counter, its estimated cost in each daily / monthly budget. Either all are charged or none.
    * Over a limit: `GatewayError` RESOURCE_EXHAUSTED, reason RATE_LIMITED (or BUDGET_EXCEEDED when a
      budget is among the exceeded limits), one QuotaFailure violation per exceeded limit (subject
      `key:key_123 requests_per_minute`), and `retry_after` (RetryInfo) = when every exceeded limit
      frees up; no `retry_after` when the call alone is larger than a limit (waiting cannot help).
    * Backend unreachable (Redis down or slower than its timeout): `limits.redis_failure` `open`
      admits the call uncounted, `closed` raises UNAVAILABLE (reason LIMITS_UNAVAILABLE, retryable).
      Either way a warning is logged at most once per `WARN_INTERVAL_S` (with the number of failures
      since the last one) and `failures` counts every failure.
    * Nothing applies (limits off, no limit configured for the caller and model): a no-op
      reservation, without counting tokens or touching the backend.
    * The returned `Reservation` must be settled with the real usage (see reservation.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.policy.backends.base import BackendUnavailableError, Exceeded, LimitBackend
from homa_server.policy.backends.memory import MemoryBackend
from homa_server.policy.checks import Subject, build_checks, needs_estimate
from homa_server.policy.reservation import Reservation, estimate_call, unreserved
from homa_server.settings import LimitSettings

log = logging.getLogger("homa.limits")

WARN_INTERVAL_S = 10.0
_KEY_LIMIT_NAMES = frozenset(
    {"requests_per_minute", "tokens_per_minute", "daily_cost_micros", "monthly_cost_micros"}
)


@dataclass
class LimiterStats:
    """Counters of one limiter (readable by tests, benchmarks and future metrics)."""

    admitted: int = 0
    refused: int = 0
    #: Backend operations that failed (Redis unreachable or too slow).
    failures: int = 0
    #: Calls admitted uncounted because the backend failed and the policy is `open`.
    failed_open: int = 0


def _values(model: object) -> dict[str, int]:
    dump = getattr(model, "model_dump", None)
    return {k: v for k, v in (dump(exclude_none=True) if dump else {}).items() if isinstance(v, int)}


class Limiter:
    """Applies the configured limits to chat calls (see the module docstring)."""

    def __init__(
        self,
        settings: LimitSettings,
        backend: LimitBackend | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.backend: LimitBackend = backend if backend is not None else MemoryBackend(clock)
        self.stats = LimiterStats()
        self._clock = clock
        self._fail_open = settings.redis_failure == "open"
        self._key_default = _values(settings.key)
        self._tenant_default = _values(settings.tenant)
        self._tenants = {t: {**self._tenant_default, **_values(v)} for t, v in settings.tenants.items()}
        self._model_default = _values(settings.model)
        self._models = {m: {**self._model_default, **_values(v)} for m, v in settings.models.items()}
        self._last_warning = -WARN_INTERVAL_S
        self._unwarned = 0

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> Limiter:
        """The limiter with the configured backend (Redis is connected lazily, on first use)."""
        if settings.backend == "redis":
            from homa_server.policy.backends.redis import RedisBackend  # noqa: PLC0415 - optional

            redis = settings.redis
            return cls(
                settings,
                RedisBackend(
                    redis.url,
                    key_prefix=redis.key_prefix,
                    timeout_s=redis.timeout_s,
                    recheck_after_s=redis.recheck_after_s,
                    max_connections=redis.max_connections,
                ),
            )
        return cls(settings)

    def subjects(self, principal: Principal | None, model: str) -> list[Subject]:
        """The limited subjects of a call by `principal` to `model` (`provider/model`) with limits."""
        found: list[Subject] = []
        if principal is not None:
            if principal.key_id:
                own = {k: v for k, v in principal.key_limits if k in _KEY_LIMIT_NAMES}
                limits = {**self._key_default, **own} if own else self._key_default
                if limits:
                    found.append(Subject(f"key:{principal.key_id}", limits))
            limits = self._tenants.get(principal.tenant, self._tenant_default)
            if limits:
                found.append(Subject(f"tenant:{principal.tenant}", limits))
        limits = self._models.get(model, self._model_default)
        if limits:
            found.append(Subject(f"model:{model}", limits))
        return found

    async def reserve(
        self,
        request: chat_pb2.CompleteRequest,
        principal: Principal | None,
        *,
        provider: str,
        kind: str,
        model: str,
    ) -> Reservation:
        """Check and charge every applicable limit for one call to `provider`'s `model`.

        Raises:
            GatewayError: RESOURCE_EXHAUSTED (RATE_LIMITED / BUDGET_EXCEEDED) over a limit;
                UNAVAILABLE (LIMITS_UNAVAILABLE) when the backend failed and the policy is `closed`.
        """
        if not self.settings.enabled:
            return unreserved()
        subjects = self.subjects(principal, f"{provider}/{model}")
        if not subjects:
            return unreserved()
        now = self._clock()
        token = uuid.uuid4().hex
        estimate = (
            estimate_call(
                request, kind=kind, model=model, default_max_output=self.settings.default_max_output_tokens
            )
            if needs_estimate(subjects)
            else None
        )
        checks = build_checks(subjects, estimate, now)
        try:
            exceeded = await self.backend.admit(token, checks.rates, checks.counters)
        except BackendUnavailableError as exc:
            self._unavailable(exc)
            if self._fail_open:
                self.stats.failed_open += 1
                return unreserved(token)
            raise GatewayError(
                "rate limits cannot be checked right now",
                Code.UNAVAILABLE,
                Reason.LIMITS_UNAVAILABLE,
                retryable=True,
                retry_after=self.settings.redis.recheck_after_s or None,
            ) from None
        if exceeded:
            self.stats.refused += 1
            raise exceeded_error(exceeded)
        self.stats.admitted += 1
        return Reservation(
            self.backend,
            token,
            estimate,
            token_keys=checks.token_keys,
            cost_keys=checks.cost_keys,
            on_unavailable=self._unavailable,
        )

    def _unavailable(self, exc: BackendUnavailableError) -> None:
        """Count a backend failure; warn loudly, at most once per WARN_INTERVAL_S."""
        self.stats.failures += 1
        now = time.monotonic()
        if now - self._last_warning < WARN_INTERVAL_S:
            self._unwarned += 1
            return
        log.warning(
            "rate-limit backend unavailable; calls are %s",
            "admitted uncounted (redis_failure: open)"
            if self._fail_open
            else "refused (redis_failure: closed)",
            extra={"error": str(exc), "failures_since_last_warning": self._unwarned + 1},
        )
        self._last_warning = now
        self._unwarned = 0

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()


def exceeded_error(exceeded: list[Exceeded]) -> GatewayError:
    """RESOURCE_EXHAUSTED naming every exceeded limit (QuotaFailure) and when to retry (RetryInfo)."""
    budget = any(e.subject.endswith("_cost_micros") for e in exceeded)
    delays = [e.retry_after_s for e in exceeded]
    retry_after = None if any(d is None for d in delays) else max(d for d in delays if d is not None)
    return GatewayError(
        f"{'budget' if budget else 'rate limit'} exceeded: {', '.join(e.subject for e in exceeded)}",
        Code.RESOURCE_EXHAUSTED,
        Reason.BUDGET_EXCEEDED if budget else Reason.RATE_LIMITED,
        retryable=retry_after is not None,
        retry_after=retry_after,
        quota_violations=[QuotaViolation(e.subject, e.description) for e in exceeded],
    )
