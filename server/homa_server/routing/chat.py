"""Chat dispatch: validate, plan the candidates, run the attempts, enforce time budgets and the stream
contract. Transport-neutral: the servicer passes the remaining deadline and gets homa messages back.

Routing and resilience (aliases, fallback, retries, breakers, priority admission, time budgets) are
the router's (`routing/attempts.py`, docs/routing.md); this module runs one call through it.

Stream contract enforced here, whatever the adapter does: the first event is `route` (naming the
deployment and attempt that serve the call, sent once that attempt produced its first event);
exactly one `finish` event ends a successful stream; an adapter stream that ends without `finish`,
or yields anything after it, is a failure (UPSTREAM_STREAM_INTERRUPTED / UPSTREAM_PROTOCOL_ERROR),
never a silent OK. Nothing is retried once the first event went out.

Limits and budgets (`limiter`, policy/limits.py): once the call is planned, its estimate is reserved
against the caller's limits (RESOURCE_EXHAUSTED before any provider is called when one is exceeded),
and the reservation is settled in `finally` from the call's usage record, however the call ends.

Response cache (`cache`, policy/cache): only for calls the servicer marks `cached=True` (direct
Complete / StreamComplete requests, never conversation turns or Converse). Once the call is planned
(validated, allowed, routed) the cache is looked up before anything is reserved: a hit is served
from the cache (route attempt 0, `homa-cache: HIT`, usage recorded with cache_hit) and costs nothing.
A miss runs the call; a successful answer is stored (a stream only once it ended after `finish`).

Allowed models: when the caller's Principal (published by the interceptor in the CallState) carries
`allowed_models`, deployments outside it are not candidates; a call left with none is refused with
PERMISSION_DENIED (generic message) before any provider is called. The requested name, the
provider-side model or `provider/model` may be listed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, Reason, upstream_interrupted
from homa_server.observability.call_state import add_upstream_time, current_call
from homa_server.policy.cache.flow import StreamStore, cached_events_for, cached_response_for
from homa_server.policy.cache.keys import CachePlan, Shape
from homa_server.policy.cache.models import route_model
from homa_server.policy.cache.service import ResponseCache
from homa_server.policy.limits import Limiter
from homa_server.policy.metered import UsageCapture, settle_with_record
from homa_server.policy.reservation import Reservation, unreserved
from homa_server.routing.attempts import Attempt, OnAttempt, Router, deadline_error
from homa_server.routing.candidates import Plan
from homa_server.routing.metering import UsageMeter
from homa_server.routing.resolver import ModelResolver
from homa_server.routing.routes import RouteTable
from homa_server.settings import ResilienceSettings
from homa_server.store.records import Recorder
from homa_server.validation.chat import validate_chat_request


class ChatDispatcher:
    """Runs chat calls through the router.

    Args:
        resolver: model names to providers (used by the default router).
        recorder: receives one usage record per admitted call (routing/metering.py); settable
            attribute, None = no recording.
        router: routes, retries, breakers and admission; default: no aliases, default resilience.
    """

    def __init__(
        self, resolver: ModelResolver, recorder: Recorder | None = None, router: Router | None = None
    ) -> None:
        self.recorder = recorder
        self.router = router or Router(RouteTable({}, None, resolver), ResilienceSettings())
        #: Rate limits and budgets (settable attribute; None = none).
        self.limiter: Limiter | None = None
        #: The response cache (settable attribute; None = none).
        self.cache: ResponseCache | None = None

    def _plan(self, request: chat_pb2.CompleteRequest, remaining: float | None) -> Plan:
        validate_chat_request(request)
        return self.router.plan(request, remaining)

    def _cache_plan(
        self, request: chat_pb2.CompleteRequest, plan: Plan, shape: Shape, cached: bool
    ) -> CachePlan | None:
        """What the response cache does for this call (None = bypass)."""
        if not cached or self.cache is None:
            return None
        state = current_call.get()
        principal = state.principal if state is not None else None
        tenant = principal.tenant if principal is not None else ""
        return self.cache.plan(request, tenant=tenant, model=route_model(plan.route), shape=shape)

    async def _reserve(
        self, request: chat_pb2.CompleteRequest, plan: Plan
    ) -> tuple[Reservation, UsageCapture | None]:
        """Charge the caller's limits for the first candidate (raises RESOURCE_EXHAUSTED over one);
        when something was reserved, also the recorder wrapper whose usage record settles it."""
        if self.limiter is None:
            return unreserved(), None
        state = current_call.get()
        first = plan.candidates[0]
        reservation = await self.limiter.reserve(
            request,
            state.principal if state is not None else None,
            provider=first.provider.name,
            kind=first.provider.kind,
            model=first.model,
        )
        return reservation, None if reservation.settled else UsageCapture(self.recorder)

    def _meter(
        self, request: chat_pb2.CompleteRequest, plan: Plan, method: str, capture: UsageCapture | None = None
    ) -> tuple[UsageMeter | None, OnAttempt | None]:
        recorder = capture if capture is not None else self.recorder
        if recorder is None:
            return None, None
        first = plan.candidates[0]
        meter = UsageMeter(
            recorder,
            request,
            provider=first.provider.name,
            kind=first.provider.kind,
            model=first.model,
            method=method,
        )

        def follow(attempt: Attempt) -> None:
            d = attempt.deployment
            meter.served_by(d.provider.name, d.provider.kind, d.model, attempt.number)

        return meter, follow

    async def complete(
        self,
        request: chat_pb2.CompleteRequest,
        remaining: float | None,
        request_id: str = "",
        *,
        cached: bool = False,
    ) -> chat_pb2.CompleteResponse:
        """One whole completion.

        Args:
            request: the chat request.
            remaining: seconds left before the caller's deadline, or None.
            request_id: gateway request id, forwarded to the provider.
            cached: the response cache may serve and store this call.

        Raises:
            GatewayError: validation, routing, provider or deadline failures.
        """
        plan = self._plan(request, remaining)
        cache_plan = self._cache_plan(request, plan, "unary", cached)
        if self.cache is not None and cache_plan is not None:
            hit = await cached_response_for(self.cache, cache_plan, request, self.recorder)
            if hit is not None:
                return hit
        reservation, capture = await self._reserve(request, plan)
        meter, follow = self._meter(request, plan, "chat.Complete", capture)
        error: BaseException | None = None
        try:
            response, attempt = await self.router.complete(plan, request, request_id, follow)
            if meter is not None:
                meter.set_usage(response.usage)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if meter is not None:
                meter.close(error)
            if capture is not None:
                await settle_with_record(reservation, capture.record)
        response.route.CopyFrom(attempt.route())
        if self.cache is not None and cache_plan is not None:
            await self.cache.store_response(cache_plan, request, response)
        return response

    async def stream(
        self,
        request: chat_pb2.CompleteRequest,
        remaining: float | None,
        request_id: str = "",
        *,
        cached: bool = False,
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """A streamed completion; see the module docstring for the contract (and `cached`).

        Closing this generator (client cancel, deadline) closes the provider stream, and with it the
        upstream HTTP response, before returning. The call's usage is recorded once, however it ends.
        """
        plan = self._plan(request, remaining)
        cache_plan = self._cache_plan(request, plan, "stream", cached)
        store = None
        if self.cache is not None and cache_plan is not None:
            replay = await cached_events_for(self.cache, cache_plan, request, self.recorder)
            if replay is not None:
                for event in replay:
                    yield event
                return
            store = StreamStore(self.cache, cache_plan, request)
        reservation, capture = await self._reserve(request, plan)
        meter, follow = self._meter(request, plan, "chat.StreamComplete", capture)
        error: BaseException | None = None
        try:
            async with aclosing(self._events(request, plan, request_id, follow)) as events:
                async for event in events:
                    if meter is not None:
                        meter.observe(event)
                    if store is not None:
                        store.observe(event)
                    yield event
            if store is not None:
                await store.save()
        except BaseException as exc:
            error = exc
            raise
        finally:
            if meter is not None:
                meter.close(error)
            if capture is not None:
                await settle_with_record(reservation, capture.record)

    async def _events(
        self,
        request: chat_pb2.CompleteRequest,
        plan: Plan,
        request_id: str,
        follow: OnAttempt | None,
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """The stream of an admitted call, contract enforced (see `stream`)."""
        opened = await self.router.open_stream(plan, request, request_id, follow)
        provider = opened.lease.attempt.deployment.provider.name
        error: BaseException | None = None
        try:
            async with aclosing(opened.events) as events:
                yield chat_pb2.StreamCompleteResponse(route=opened.lease.attempt.route())
                event: chat_pb2.StreamCompleteResponse | None = opened.first
                finished = False
                while event is not None:
                    if finished:
                        raise GatewayError(
                            f"{provider} sent events after finish",
                            Code.UNAVAILABLE,
                            Reason.UPSTREAM_PROTOCOL_ERROR,
                            retryable=True,
                            metadata={"provider": provider},
                        )
                    finished = event.HasField("finish")
                    yield event
                    event = await self._next(events, plan)
                if not finished:
                    raise upstream_interrupted(provider, "no finish event")
        except BaseException as exc:
            error = exc
            raise
        finally:
            opened.lease.close(error)

    @staticmethod
    async def _next(
        events: AsyncGenerator[chat_pb2.StreamCompleteResponse, None], plan: Plan
    ) -> chat_pb2.StreamCompleteResponse | None:
        """The provider's next event within the call's deadline; None at the end of the stream."""
        scope = asyncio.timeout(plan.budget.remaining())
        started = time.perf_counter()
        try:
            async with scope:
                return await anext(events)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if scope.expired():
                raise deadline_error() from None
            raise
        finally:
            add_upstream_time(time.perf_counter() - started)
