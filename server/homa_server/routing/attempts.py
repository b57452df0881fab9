"""The attempt loop: try a call's candidates with retries, breakers and admission until one answers.

Contract:
    * Candidates come from `routing/candidates.py` (route deployments, then `options.fallback_models`,
      then the route's `fallbacks`). For each, in order: a deployment whose circuit is open is
      skipped; admission may make the call wait or shed it (skipped too); otherwise an attempt runs.
    * A failed attempt is retried on the same deployment while `routing/retry.py` allows it
      (retryable failure, attempts per deployment, Retry-After, deadline), then the loop falls back
      to the next candidate when the failure allows it; any other failure ends the call at once.
      `resilience.retry.max_total_attempts` bounds the attempts of a call.
    * Streams: an attempt succeeds when its first event arrives (within the time-to-first-token
      limit). Nothing reaches the client before that, so fallback and retry happen only before the
      first chunk; afterwards the stream belongs to the caller (`OpenedStream.lease`).
    * The call's deadline bounds everything: waits, backoff and attempts. Its expiry ends the call with
      DEADLINE_EXCEEDED; a first-token timeout is an attempt failure (UPSTREAM_TIMEOUT) that falls back.
    * Trailers `homa-provider`, `homa-model`, `homa-attempts` name the latest attempt; `Attempt.route()`
      is the `route` event / response field of the serving one.
    * When nothing answers: with a single failure its error unchanged; otherwise one GatewayError with
      the last failure's status and reason whose message and metadata (`attempt_<n>`, `skipped_<n>`,
      `attempts`) list every attempt's deployment and reason.
    * Every attempt's outcome feeds the deployment's breaker and balancer statistics (`Lease`,
      routing/outcomes.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import GatewayError, Reason, upstream_interrupted
from homa_server.observability.call_state import add_upstream_time
from homa_server.providers.base import CallContext, ChatProvider
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing import documents
from homa_server.routing.admission import Admission, Slot
from homa_server.routing.balancer import Balancer
from homa_server.routing.breaker import BreakerBoard, CircuitBreaker, Permit
from homa_server.routing.candidates import CandidatePlanner, Plan
from homa_server.routing.outcomes import (
    Attempt,
    AttemptLog,
    Lease,
    OnAttempt,
    circuit_open,
    deadline_error,
    first_token_timeout,
)
from homa_server.routing.resolver import ModelResolver
from homa_server.routing.retry import RetryPolicy, may_fall_back
from homa_server.routing.routes import Deployment, RouteTable
from homa_server.settings import ResilienceSettings, Settings

__all__ = ["Attempt", "Lease", "OnAttempt", "OpenedStream", "Router", "deadline_error"]

T = TypeVar("T")
_Opened = tuple[chat_pb2.StreamCompleteResponse, AsyncGenerator[chat_pb2.StreamCompleteResponse, None]]


@dataclass(slots=True)
class OpenedStream:
    """A stream whose first event arrived: relay `first`, then the rest of `events`; then close
    `events` and `lease.close(error)`."""

    lease: Lease
    first: chat_pb2.StreamCompleteResponse
    events: AsyncGenerator[chat_pb2.StreamCompleteResponse, None]


class Router:
    """Routes, balancing, breakers, admission and retries of one process; see the module docstring.

    Args:
        table: aliases and resolved models.
        settings: `resilience` settings.
        rng: randomness for jitter and weighted order (seeded in tests).
        sleep: how backoff waits (replaced in tests).
        clock: monotonic seconds for breakers, admission and budgets (replaced in tests).
    """

    def __init__(
        self,
        table: RouteTable,
        settings: ResilienceSettings,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._sleep = sleep
        self.balancer = Balancer(self._rng)
        self.breakers = BreakerBoard(settings.breaker, clock)
        self.admission = Admission(settings.admission, clock)
        self.planner = CandidatePlanner(table, self.balancer, clock)

    @classmethod
    def from_settings(cls, settings: Settings, registry: ProviderRegistry, resolver: ModelResolver) -> Router:
        """The router for a gateway (raises ValueError on routes naming unknown providers)."""
        table = RouteTable(
            settings.routes,
            registry,
            resolver,
            settings.resilience.admission.default_max_concurrency,
            settings.default_model,
        )
        return cls(table, settings.resilience)

    def plan(self, request: chat_pb2.CompleteRequest, remaining: float | None) -> Plan:
        """Candidates, priority and budget of a validated request (see routing/candidates.py)."""
        return self.planner.plan(request, remaining)

    def _policy(self, plan: Plan) -> RetryPolicy:
        r = self._settings.retry
        per_deployment = plan.route.max_attempts_per_deployment or r.max_attempts
        return RetryPolicy(per_deployment, r.base_delay_s, r.max_delay_s, r.max_retry_after_s)

    async def complete(
        self,
        plan: Plan,
        request: chat_pb2.CompleteRequest,
        request_id: str,
        on_attempt: OnAttempt | None = None,
    ) -> tuple[chat_pb2.CompleteResponse, Attempt]:
        """Run a unary completion through the candidates; returns the answer and its attempt.

        Raises:
            GatewayError: see the module docstring.
        """

        async def call(
            provider: ChatProvider, ctx: CallContext, attempt: Attempt
        ) -> chat_pb2.CompleteResponse:
            scope = asyncio.timeout(ctx.remaining())
            try:
                async with scope:
                    prepared = await documents.for_provider(request, provider.kind)
                    return await provider.complete_chat(prepared, ctx)
            except TimeoutError:
                if scope.expired():
                    raise deadline_error() from None
                raise

        response, lease = await self._run(plan, request_id, call, on_attempt)
        lease.close(None)
        return response, lease.attempt

    async def open_stream(
        self,
        plan: Plan,
        request: chat_pb2.CompleteRequest,
        request_id: str,
        on_attempt: OnAttempt | None = None,
    ) -> OpenedStream:
        """Open a stream through the candidates: returns once one of them sent its first event.

        Raises:
            GatewayError: see the module docstring.
        """

        async def call(provider: ChatProvider, ctx: CallContext, attempt: Attempt) -> _Opened:
            events = provider.stream_chat(await documents.for_provider(request, provider.kind), ctx)
            remaining = ctx.remaining()
            first_token = plan.budget.first_token_s
            by_first_token = first_token is not None and (remaining is None or first_token < remaining)
            scope = asyncio.timeout(first_token if by_first_token else remaining)
            try:
                async with scope:
                    first = await anext(events)
            except StopAsyncIteration:
                await events.aclose()
                raise upstream_interrupted(provider.name, "no events") from None
            except BaseException as exc:
                await events.aclose()
                if isinstance(exc, TimeoutError) and scope.expired():
                    if by_first_token:
                        raise first_token_timeout(attempt.deployment.key) from None
                    raise deadline_error() from None
                raise
            return first, events

        (first, events), lease = await self._run(plan, request_id, call, on_attempt)
        return OpenedStream(lease, first, events)

    async def _admit(
        self, deployment: Deployment, plan: Plan, tally: AttemptLog
    ) -> tuple[CircuitBreaker, Permit, Slot] | None:
        """Breaker permit and admission slot for one attempt, or None (skip: recorded in `tally`)."""
        key = deployment.key
        breaker = self.breakers.get(key)
        permit = breaker.acquire()
        if permit is None:
            tally.skip(key, circuit_open(key, breaker.retry_in()))
            return None
        try:
            slot = await self.admission.acquire(
                key, deployment.max_concurrency, plan.priority, plan.budget.deadline
            )
        except BaseException as exc:
            breaker.release(permit)
            if not isinstance(exc, GatewayError):
                raise
            tally.skip(key, exc)
            return None
        return breaker, permit, slot

    async def _run(
        self,
        plan: Plan,
        request_id: str,
        call: Callable[[ChatProvider, CallContext, Attempt], Awaitable[T]],
        on_attempt: OnAttempt | None,
    ) -> tuple[T, Lease]:
        tally = AttemptLog(on_attempt)
        policy = self._policy(plan)
        budget = plan.budget
        for deployment in plan.candidates:
            tries = 0
            while tally.number < self._settings.retry.max_total_attempts:
                if budget.remaining() == 0.0:
                    raise tally.combined(deadline_error())
                admitted = await self._admit(deployment, plan, tally)
                if admitted is None:
                    break
                tries += 1
                attempt = tally.start(deployment)
                lease = Lease(attempt, *admitted, self.balancer.stats(deployment.key))
                ctx = CallContext(deployment.model, budget.deadline, request_id, budget.first_token_s)
                started = time.perf_counter()
                try:
                    result = await call(cast(ChatProvider, deployment.provider), ctx, attempt)
                except Exception as exc:
                    add_upstream_time(time.perf_counter() - started)
                    lease.close(exc)
                    tally.fail(deployment.key, exc)
                    deadline_hit = isinstance(exc, GatewayError) and exc.reason is Reason.DEADLINE_EXCEEDED
                    if deadline_hit or budget.remaining() == 0.0:
                        raise tally.combined(exc) from None
                    delay = policy.delay(tries, exc, budget.remaining(), self._rng)
                    if delay is not None:
                        await self._sleep(delay)
                        add_upstream_time(delay)  # waiting on the upstream's account, not overhead
                        continue
                    if may_fall_back(exc):
                        break
                    raise tally.combined(exc) from None
                except BaseException as exc:
                    add_upstream_time(time.perf_counter() - started)
                    lease.close(exc)
                    raise
                add_upstream_time(time.perf_counter() - started)
                lease.first_output()
                return result, lease
        raise tally.combined(tally.last)
