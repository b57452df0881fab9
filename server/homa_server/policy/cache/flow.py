"""The cache around one dispatched call: look up first, call on a miss, store a successful answer.

The dispatcher (routing/chat.py) uses the pieces (`cached_response_for`, `cached_events_for`,
`StreamStore`) after validation, planning (route, allowed models) and before any limit reservation:
a hit reserves nothing and calls no provider. `complete_through_cache` / `stream_through_cache`
combine them around a callable, for callers without a dispatcher (benchmarks, tests).

Contract:
    * A plan of None (bypass: mode OFF, non-deterministic without opt-in, conversation, cache
      disabled or absent) → the call runs exactly as without a cache, no trailer.
    * Hit → the cached answer (replay.py), `homa-cache: HIT`, one usage record with cache_hit=true.
    * Miss → `homa-cache: MISS`, the call runs; a unary answer is stored after it returned; a stream
      is stored once it has ended normally after its `finish` event (a stream cut, failed,
      cancelled or larger than `cache.max_entry_bytes` is not stored).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.policy.cache.keys import CachePlan, Shape
from homa_server.policy.cache.replay import cached_events, cached_response, mark, record_hit
from homa_server.policy.cache.service import ResponseCache
from homa_server.store.records import Recorder


async def cached_response_for(
    cache: ResponseCache, cache_plan: CachePlan, request: chat_pb2.CompleteRequest, recorder: Recorder | None
) -> chat_pb2.CompleteResponse | None:
    """Look up a unary answer; on a hit also record its usage. Sets the `homa-cache` trailer."""
    started = time.perf_counter()
    hit = await cache.lookup(cache_plan, request)
    mark(cache_plan, hit is not None)
    if hit is None:
        return None
    response = cached_response(hit.entry)
    record_hit(recorder, response.route, "chat.Complete", started)
    return response


async def cached_events_for(
    cache: ResponseCache, cache_plan: CachePlan, request: chat_pb2.CompleteRequest, recorder: Recorder | None
) -> list[chat_pb2.StreamCompleteResponse] | None:
    """Look up a stored stream to replay; on a hit also record its usage. Sets the trailer."""
    started = time.perf_counter()
    hit = await cache.lookup(cache_plan, request)
    mark(cache_plan, hit is not None)
    if hit is None:
        return None
    events = cached_events(hit.entry)
    record_hit(recorder, events[0].route, "chat.StreamComplete", started)
    return events


class StreamStore:
    """Collects a live stream's events and stores them once the stream ended normally."""

    def __init__(
        self, cache: ResponseCache, cache_plan: CachePlan, request: chat_pb2.CompleteRequest
    ) -> None:
        self._cache = cache
        self._plan = cache_plan
        self._request = request
        self._events: list[chat_pb2.StreamCompleteResponse] | None = [] if cache_plan.write else None
        self._size = 0

    def observe(self, event: chat_pb2.StreamCompleteResponse) -> None:
        """Note one event sent to the client (capture stops past `cache.max_entry_bytes`)."""
        if self._events is None:
            return
        self._size += event.ByteSize()
        if self._size > self._cache.settings.max_entry_bytes:
            self._events = None
        else:
            self._events.append(event)

    async def save(self) -> None:
        """Store the stream (only one that ended with `finish`; no-op otherwise)."""
        if self._events is not None:
            await self._cache.store_events(self._plan, self._request, self._events)


def _plan(
    cache: ResponseCache | None, request: chat_pb2.CompleteRequest, tenant: str, model: str, shape: Shape
) -> CachePlan | None:
    if cache is None:
        return None
    return cache.plan(request, tenant=tenant, model=model, shape=shape)


async def complete_through_cache(
    cache: ResponseCache | None,
    request: chat_pb2.CompleteRequest,
    *,
    tenant: str,
    model: str,
    recorder: Recorder | None,
    call: Callable[[], Awaitable[chat_pb2.CompleteResponse]],
) -> chat_pb2.CompleteResponse:
    """A unary call through the cache (see the module docstring); `call` runs it on a miss."""
    cache_plan = _plan(cache, request, tenant, model, "unary")
    if cache is None or cache_plan is None:
        return await call()
    hit = await cached_response_for(cache, cache_plan, request, recorder)
    if hit is not None:
        return hit
    response = await call()
    await cache.store_response(cache_plan, request, response)
    return response


async def stream_through_cache(
    cache: ResponseCache | None,
    request: chat_pb2.CompleteRequest,
    *,
    tenant: str,
    model: str,
    recorder: Recorder | None,
    events: Callable[[], AsyncGenerator[chat_pb2.StreamCompleteResponse, None]],
) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
    """A streamed call through the cache (see the module docstring); closing it closes `events()`."""
    cache_plan = _plan(cache, request, tenant, model, "stream")
    store = None
    if cache is not None and cache_plan is not None:
        replay = await cached_events_for(cache, cache_plan, request, recorder)
        if replay is not None:
            for event in replay:
                yield event
            return
        store = StreamStore(cache, cache_plan, request)
    async with aclosing(events()) as stream:
        async for event in stream:
            if store is not None:
                store.observe(event)
            yield event
    if store is not None:
        await store.save()
