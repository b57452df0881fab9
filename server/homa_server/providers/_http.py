"""Shared HTTP plumbing for provider adapters: pooled clients, per-call timeouts, transport errors.

Every provider instance owns exactly one `UpstreamClient` (built by `build_client`; see
_upstream.py) for its whole life, so connections are reused across calls (keep-alive, one TLS
handshake per connection). It offers the subset of `httpx.AsyncClient` the adapters use and returns
`httpx.Response` objects, but sends through a pooled aiohttp session. HTTP/1.1 only: vendors stream
SSE over HTTP/1.1 fine, and HTTP/2 costs more CPU per request than it saves at our concurrency.

Deadlines: `TimeoutPolicy.for_call` bounds every httpx phase by what is left of the caller's
deadline, so a call never outlives its gRPC deadline by more than one read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._errors import protocol_error
from homa_server.providers._upstream import UpstreamClient
from homa_server.providers.base import CallContext
from homa_server.settings import ProviderSettings

__all__ = [
    "HTTPProvider",
    "TimeoutPolicy",
    "UpstreamClient",
    "build_client",
    "deadline_exceeded",
    "get_response",
    "parse_json",
    "parse_retry_after",
    "post_within_deadline",
    "transport_error",
    "upstream_timeout",
]


class HTTPProvider:
    """`name`, `kind` and `aclose` of an adapter that owns one pooled client (see `Provider`).

    Subclasses set `_name` (the instance name from settings), `_kind` (the configured adapter
    kind) and `_client` (from `build_client`) in their `__init__`.
    """

    _name: str
    _kind: str
    _client: UpstreamClient

    @property
    def name(self) -> str:
        """Instance name from settings."""
        return self._name

    @property
    def kind(self) -> str:
        """The configured adapter kind (e.g. "openai", or "openai_compatible" for other servers)."""
        return self._kind

    async def aclose(self) -> None:
        """Close the pooled connections. The provider must not be used afterwards."""
        await self._client.aclose()


def build_client(
    settings: ProviderSettings,
    *,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> UpstreamClient:
    """Build the one pooled client of a provider instance.

    Args:
        settings: pool limits and timeouts come from here.
        headers: default headers sent on every request (auth, vendor version headers, ...). Built once
            here so requests do not rebuild them.
        transport: send through this httpx transport (tests pass `httpx.MockTransport`) by way of
            an `httpx.AsyncClient`, instead of the client's own aiohttp pool. Environment proxies
            (`HTTPS_PROXY`, `NO_PROXY`) are honoured by the aiohttp pool.

    The caller must `await client.aclose()` at shutdown. Redirects are not followed: a vendor API
    that redirects is misconfigured, and following could leak the auth header to another host.
    """
    return UpstreamClient(
        headers=headers,
        timeout=TimeoutPolicy(settings).default,
        max_connections=settings.max_connections,
        transport=transport,
    )


class TimeoutPolicy:
    """Turns a call's deadline into an `httpx.Timeout` (computed once per provider, then per call).

    Without a deadline, the settings apply: connect = `connect_timeout_s`; read, write and pool =
    `read_timeout_s`. With a deadline, each phase is capped by the time remaining:
    connect = min(connect, remaining), read/write/pool = min(read, remaining).
    Note that httpx's read timeout is per read, not total; callers that need a hard total for a
    whole body wrap the call in `asyncio.timeout(remaining)`.
    """

    __slots__ = ("_connect", "_read", "default")

    def __init__(self, settings: ProviderSettings) -> None:
        self._connect = settings.connect_timeout_s
        self._read = settings.read_timeout_s
        self.default = httpx.Timeout(self._read, connect=self._connect)

    def for_call(self, ctx: CallContext) -> httpx.Timeout:
        """The timeout for one request of `ctx`.

        Raises:
            GatewayError: DEADLINE_EXCEEDED (reason DEADLINE_EXCEEDED) when the deadline has already
                passed, so no request is sent that cannot finish in time.
        """
        remaining = ctx.remaining()
        if remaining is None:
            return self.default
        if remaining <= 0.0:
            raise deadline_exceeded()
        bounded = min(self._read, remaining)
        return httpx.Timeout(bounded, connect=min(self._connect, remaining))


def deadline_exceeded() -> GatewayError:
    """DEADLINE_EXCEEDED raised before contacting the upstream: the caller's deadline is spent."""
    return GatewayError(
        "the call deadline passed before the upstream request",
        Code.DEADLINE_EXCEEDED,
        Reason.DEADLINE_EXCEEDED,
    )


def upstream_timeout(provider: str, detail: str) -> GatewayError:
    """DEADLINE_EXCEEDED / UPSTREAM_TIMEOUT: the upstream did not answer within the time allowed."""
    return GatewayError(
        f"{provider} did not answer in time: {detail}",
        Code.DEADLINE_EXCEEDED,
        Reason.UPSTREAM_TIMEOUT,
        retryable=True,
        metadata={"provider": provider},
    )


def transport_error(provider: str, exc: httpx.HTTPError) -> GatewayError:
    """Map an httpx failure that happened before a response arrived.

    - any timeout (connect, read, write, pool) -> DEADLINE_EXCEEDED, UPSTREAM_TIMEOUT, retryable
    - connection refused / DNS / TLS failure -> UNAVAILABLE, UPSTREAM_UNAVAILABLE, retryable
    - anything else (connection reset, protocol error, ...) -> UNAVAILABLE, UPSTREAM_UNAVAILABLE,
      retryable: a dropped keep-alive connection is the usual cause and a new one usually works.

    The message names the exception class only: httpx messages may carry URLs, and URLs of some
    vendors carry credentials.
    """
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return upstream_timeout(provider, kind)
    detail = "could not connect" if isinstance(exc, httpx.ConnectError) else "transport failure"
    return GatewayError(
        f"{provider} is unreachable: {detail} ({kind})",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        retryable=True,
        metadata={"provider": provider, "transport_error": kind},
    )


async def post_within_deadline(
    client: UpstreamClient,
    provider: str,
    url: httpx.URL,
    ctx: CallContext,
    timeouts: TimeoutPolicy,
    *,
    content: bytes,
    headers: Mapping[str, str],
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """POST `content` within what is left of `ctx`'s deadline; the response, whatever its status.

    Each httpx phase is bounded by `timeouts.for_call(ctx)` and the whole call (body included) by
    `asyncio.timeout(ctx.remaining())`.

    Raises:
        GatewayError: DEADLINE_EXCEEDED before sending when the deadline has passed (see
            `TimeoutPolicy.for_call`); UPSTREAM_TIMEOUT when it passes during the call; the
            `transport_error` of an httpx failure.
    """
    timeout = timeouts.for_call(ctx)
    try:
        async with asyncio.timeout(ctx.remaining()):
            return await client.post(url, content=content, headers=headers, timeout=timeout, auth=auth)
    except TimeoutError:
        raise upstream_timeout(provider, "the call deadline passed") from None
    except httpx.HTTPError as exc:
        raise transport_error(provider, exc) from None


async def get_response(
    client: UpstreamClient,
    provider: str,
    url: httpx.URL,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """GET `url` (no deadline: listings run outside calls); the response, whatever its status.

    Raises:
        GatewayError: the `transport_error` of an httpx failure.
    """
    try:
        return await client.get(url, params=params, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        raise transport_error(provider, exc) from None


def parse_json(provider: str, content: bytes) -> Any:
    """The JSON value of a response body.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR ("the response body is not JSON").
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise protocol_error(provider, "the response body is not JSON") from None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait before retrying, from `retry-after-ms` or `retry-after`, else None.

    `retry-after-ms` (milliseconds, OpenAI/Azure SDK convention) wins over `retry-after`, which is
    either delta-seconds or an HTTP date (RFC 9110 section 10.2.3). Negative, malformed or past
    values give None or 0.0 respectively. `headers` lookups must be case-insensitive
    (`httpx.Headers` is).

    Args:
        headers: response headers.
        now: current Unix time for HTTP-date values (defaults to `time.time()`).
    """
    millis = headers.get("retry-after-ms")
    if millis:
        seconds = _non_negative_float(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _non_negative_float(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "GMT" was omitted
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _non_negative_float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0.0:
        return None
    return number
