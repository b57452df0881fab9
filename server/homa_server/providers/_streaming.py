"""The skeleton every streaming adapter runs: open the upstream response, read the first event
under the first-token timeout, map failures, and drain the body once the answer is complete.

`open_stream` is an async context manager entered once per call; the adapter's own generator then
iterates `UpstreamStream.events` itself, so the per-event path has no extra generator layer. What
stays in the adapter is what really differs per vendor: how the terminator is recognised, the
per-event deadline check, and what a body that ends early means.

Failure mapping (for everything raised while the context is open, including the adapter's loop):

- `truncated` (the framing parser's "body ended mid-event") -> UPSTREAM_STREAM_INTERRUPTED
- the builtin `TimeoutError` (only the first-token timer raises it here; httpx has its own)
  -> UPSTREAM_TIMEOUT
- an httpx timeout -> `transport_error` (UPSTREAM_TIMEOUT)
- another httpx error -> UPSTREAM_STREAM_INTERRUPTED once the response head arrived, else
  `transport_error`

With `complete`, failures of the framing or the transport after the answer is complete (the
predicate returns True) are ignored: the context exits normally. `GatewayError`s,
`CancelledError` and `GeneratorExit` always pass through unchanged.

Cancellation: leaving the context closes the framing parser, the body iterator and then the
response (in that order), so closing or cancelling the adapter's generator closes the upstream
connection at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Generic, TypeVar

import httpx

from homa_server.errors import GatewayError, upstream_interrupted
from homa_server.providers._errors import protocol_error
from homa_server.providers._http import transport_error, upstream_timeout
from homa_server.providers.base import CallContext

__all__ = ["DRAIN_TIMEOUT_S", "SSE", "UpstreamStream", "first_token_timer", "open_stream"]

T = TypeVar("T")

SSE = "text/event-stream"  # the media type of server-sent events

# After the terminator the rest of the body (the chunked terminator, a trailing `[DONE]`) is read
# so the connection can be reused, but never for longer than this: a server that keeps the stream
# open must not hold us.
DRAIN_TIMEOUT_S = 0.5


class UpstreamStream(Generic[T]):
    """An open upstream stream (see `open_stream`).

    Attributes:
        response: the upstream response (status and content type already checked).
        events: the framed events of the body; iterate it directly.
        first: the first event, read under the first-token timeout; None when the body was empty.
    """

    __slots__ = ("_quiet", "events", "first", "response")

    def __init__(
        self,
        response: httpx.Response,
        events: AsyncGenerator[T, None],
        first: T | None,
        quiet: tuple[type[BaseException], ...],
    ) -> None:
        self.response = response
        self.events = events
        self.first = first
        self._quiet = quiet

    async def drain(self) -> None:
        """Read what follows the terminator so the connection can go back to the pool.

        Bounded by `DRAIN_TIMEOUT_S`; failures are ignored (the answer is already complete and the
        response is closed on leaving the context; reuse is only an optimisation).
        """
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for _ in self.events:
                    pass
        except self._quiet:
            pass


def first_token_timer(first_at: float | None) -> asyncio.Timeout:
    """`asyncio.timeout` until `first_at` (time.monotonic based), or an inert one for None."""
    if first_at is None:
        return asyncio.timeout(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (first_at - time.monotonic()))


@asynccontextmanager
async def open_stream(
    provider: str,
    ctx: CallContext,
    request: AbstractAsyncContextManager[httpx.Response],
    *,
    media_type: str,
    http_error: Callable[[httpx.Response], GatewayError],
    parse: Callable[[AsyncIterator[bytes]], AsyncGenerator[T, None]],
    truncated: type[Exception],
    truncated_detail: str = "the connection closed in the middle of an event",
    first_detail: str = "no first event within the first-token timeout",
    drain_ignores: tuple[type[BaseException], ...] = (),
    complete: Callable[[], bool] | None = None,
    on_open: Callable[[httpx.Response], None] | None = None,
) -> AsyncIterator[UpstreamStream[T]]:
    """Send `request` and yield the open stream; see the module docstring for failure mapping.

    Args:
        provider: instance name, for errors.
        ctx: the call; `first_token_timeout` bounds sending, the head checks and reading the
            first event.
        request: the not yet entered `client.stream(...)` context.
        media_type: the content type a 2xx answer must start with, else UPSTREAM_PROTOCOL_ERROR.
        http_error: the vendor's error for a non-2xx answer (its body is read first).
        parse: frames the body's byte chunks into events (an async generator).
        truncated: what `parse` raises when the body ends inside an event.
        truncated_detail: the interruption message for `truncated`.
        first_detail: the timeout message when no first event arrives in time.
        drain_ignores: more exceptions `UpstreamStream.drain` ignores, besides `truncated`, the
            drain timeout and httpx errors.
        complete: when given and true at the time of a framing or transport failure, the failure
            is ignored (the answer was already complete).
        on_open: called with the response once its head passed the checks.
    """
    first_at = None if ctx.first_token_timeout is None else time.monotonic() + ctx.first_token_timeout
    started = False  # response headers received: later transport failures are interruptions
    try:
        async with AsyncExitStack() as stack:
            async with first_token_timer(first_at):
                response = await stack.enter_async_context(request)
                started = True
                if response.status_code >= 300:
                    await response.aread()
                    raise http_error(response)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith(media_type):
                    raise protocol_error(provider, f"expected {media_type}, got {content_type or 'no type'}")
                if on_open is not None:
                    on_open(response)
                chunks = response.aiter_bytes()
                events = parse(chunks)
                # Finalise both iterators on exit rather than in the loop's asyncgen GC hook
                # (httpx annotates aiter_bytes as AsyncIterator; it is an async generator).
                stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
                stack.push_async_callback(events.aclose)
                first = await anext(events, None)
            yield UpstreamStream(
                response, events, first, (TimeoutError, truncated, httpx.HTTPError, *drain_ignores)
            )
    except truncated:
        if complete is None or not complete():
            raise upstream_interrupted(provider, truncated_detail) from None
    except TimeoutError:
        # Only the first-token timer raises the builtin TimeoutError here (httpx has its own).
        raise upstream_timeout(provider, first_detail) from None
    except httpx.HTTPError as exc:
        if complete is not None and complete():
            return
        if isinstance(exc, httpx.TimeoutException) or not started:
            raise transport_error(provider, exc) from None
        raise upstream_interrupted(provider, f"the stream broke ({type(exc).__name__})") from None
