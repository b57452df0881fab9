"""Serving a cache hit: the answer as it was, marked as cached, with trailers and a usage record.

Contract:
    * A cached answer is marked by its route: `Route.attempt` is 0 (no provider attempt was made);
      provider and model are those of the call that produced it. Unary answers carry that route in
      `CompleteResponse.route`; a replayed stream starts with that `route` event, followed by the
      stored events exactly as they were sent (deltas, tool calls, usage, ..., `finish` last).
    * Usage inside the answer is the original call's (what producing it cost); the usage record of
      a hit has `cache_hit=true`, zero tokens and zero cost (a hit costs nothing).
    * Trailers: `homa-cache: HIT|MISS` whenever the cache was consulted (absent when bypassed),
      `homa-cache-key` (the key AdminService.InvalidateCache accepts), and on a hit `homa-provider` /
      `homa-model` of the stored route with `homa-attempts: 0`.
"""

from __future__ import annotations

import logging
import time

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import usage_pb2
from homa_server.observability.call_state import current_call, set_trailer
from homa_server.policy.cache.entry import Entry
from homa_server.policy.cache.keys import CachePlan
from homa_server.routing.metering import feature_name
from homa_server.store.database import now_us
from homa_server.store.records import Recorder, UsageRecord

log = logging.getLogger("homa.cache")

CACHED_ATTEMPT = 0


def mark(cache_plan: CachePlan, hit: bool) -> None:
    """Set the `homa-cache` and `homa-cache-key` trailers of the current RPC."""
    set_trailer("homa-cache", "HIT" if hit else "MISS")
    set_trailer("homa-cache-key", cache_plan.key)


def _route_trailers(route: usage_pb2.Route) -> None:
    set_trailer("homa-provider", route.provider)
    set_trailer("homa-model", route.model)
    set_trailer("homa-attempts", str(CACHED_ATTEMPT))


def cached_response(entry: Entry) -> chat_pb2.CompleteResponse:
    """The stored unary answer with its route marked as cached; sets the route trailers."""
    response = entry.response()
    response.route.attempt = CACHED_ATTEMPT
    _route_trailers(response.route)
    return response


def cached_events(entry: Entry) -> list[chat_pb2.StreamCompleteResponse]:
    """The stored stream with its `route` event marked as cached; sets the route trailers."""
    events = entry.events()
    route = next((e.route for e in events if e.HasField("route")), None)
    if route is None:
        route = usage_pb2.Route(model=entry.model)
    route = usage_pb2.Route(provider=route.provider, model=route.model, attempt=CACHED_ATTEMPT)
    _route_trailers(route)
    return [chat_pb2.StreamCompleteResponse(route=route), *(e for e in events if not e.HasField("route"))]


def record_hit(recorder: Recorder | None, route: usage_pb2.Route, method: str, started: float) -> None:
    """One usage record for a hit (cache_hit=true, no tokens, no cost). Never raises."""
    if recorder is None:
        return
    try:
        state = current_call.get()
        principal = state.principal if state is not None else None
        recorder.usage(
            UsageRecord(
                time_us=now_us(),
                method=feature_name(method),
                tenant=principal.tenant if principal is not None else "",
                status="completed",
                request_id=state.request_id if state is not None else "",
                api_key_id=(principal.key_id or "") if principal is not None else "",
                principal=principal.subject if principal is not None else "",
                auth_method=principal.method if principal is not None else "",
                model=f"{route.provider}/{route.model}" if route.provider else route.model,
                provider=route.provider,
                attempts=CACHED_ATTEMPT,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                cache_hit=True,
            )
        )
    except Exception:
        log.exception("usage record of a cache hit failed")
