"""`UpstreamClient`: the HTTP client of provider adapters, an aiohttp connection pool behind the few
`httpx.AsyncClient` methods the adapters call.

Why not `httpx.AsyncClient` itself: its request pipeline (URL and header merging, cookies, auth and
event hooks, redirect handling, transport and stream wrapping) cost about 150 µs of CPU per
request on top of the socket work, more than the rest of a unary upstream call. This client keeps
the adapters' API (`post`, `get`, `stream`, `aclose`; `httpx.Response` results; httpx exceptions)
and sends straight through one pooled `aiohttp.ClientSession`, with aiohttp's C-accelerated HTTP
parser.

What is kept from httpx, so adapters and vendors see no difference:

- Request headers: httpx's defaults (`Accept`, `Accept-Encoding`, `Connection`, `User-Agent`),
  then the client's default headers, then the call's, merged case-insensitively with the later
  winning, plus `Host` and `Content-Length` as httpx computes them; names go out lower-cased, in
  httpx's order.
- URLs are sent byte for byte (`yarl.URL(..., encoded=True)`): SigV4 signs the exact path.
- `params` are merged into the URL's query by httpx (`URL.copy_merge_params`), encoded as httpx
  encodes them. (httpx 0.28's own client replaces an existing query instead; merging is what
  callers mean, and no adapter passes both.)
- Responses are real `httpx.Response` objects; httpx decodes `Content-Encoding` (aiohttp's
  decompression is off) and the response headers are the upstream's, unchanged.
- `timeout`: an `httpx.Timeout` per call (None: the client's), mapped to aiohttp as connect ->
  `sock_connect`, read -> `sock_read` (per read, like httpx), pool -> `connect` (aiohttp's
  pool-wait-plus-connect budget); write has no aiohttp equivalent. No total: callers bound whole
  calls with `asyncio.timeout`.
- `auth`: an `httpx.Auth` flow runs over a real `httpx.Request` (SigV4 signs exactly what is
  sent). Only calls that pass `auth` pay for building it.
- Redirects are never followed. Environment proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) are
  read once and resolved once per origin (aiohttp's `trust_env` would re-read them per request).
- Streams: `stream()` returns once the response head arrives; leaving its context before the
  body is complete closes the TCP connection at once (a cancelled call is seen upstream as a
  disconnect), after a complete body the connection goes back to the pool.
- Failures raise the httpx exception classes `_http.transport_error` maps:

  - connecting (refused, DNS, TLS)                -> httpx.ConnectError
  - connect phase or pool wait timed out          -> httpx.ConnectTimeout
  - waiting for bytes timed out                   -> httpx.ReadTimeout
  - truncated body                                -> httpx.ReadError
  - peer closed or reset the connection           -> httpx.RemoteProtocolError
  - any other aiohttp failure                     -> httpx.TransportError

With `transport=` (tests and benchmarks pass e.g. `httpx.MockTransport`), the same methods delegate
to an `httpx.AsyncClient` over that transport instead.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final

import aiohttp
import httpx
import yarl
from httpx._client import ACCEPT_ENCODING, USER_AGENT

__all__ = ["UpstreamClient"]

_AIOHTTP_ERRORS: Final = (aiohttp.ClientError, TimeoutError)
_DEFAULT: Final = httpx.USE_CLIENT_DEFAULT
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_URL_CACHE_SIZE: Final = 512

# (URL as sent, Host header value, proxy or None)
_Target = tuple[yarl.URL, str, str | None]


def _map_error(exc: BaseException, phase: str) -> httpx.TransportError:
    """The httpx exception for an aiohttp/asyncio failure (`phase`: "connect" or "read")."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(name)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        # Socket read timeouts, including while waiting for the response head.
        return httpx.ReadTimeout(name)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(name)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(name)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return httpx.RemoteProtocolError(name)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(name)
    # aiohttp's own connect/pool timer raises a bare TimeoutError.
    return httpx.ConnectTimeout(name) if phase == "connect" else httpx.ReadTimeout(name)


class _Body(httpx.AsyncByteStream):
    """A response body read from aiohttp; see the module docstring for close semantics."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _AIOHTTP_ERRORS as exc:
            raise _map_error(exc, "read") from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            # Unread body (cancel, error, early return): drop the connection so the upstream sees
            # the disconnect now instead of streaming into a buffer nobody reads.
            self._response.close()


class _Stream(AbstractAsyncContextManager[httpx.Response]):
    """What `UpstreamClient.stream` returns: sends on enter, closes the response on exit."""

    __slots__ = ("_client", "_kwargs", "_method", "_response", "_url")

    def __init__(
        self, client: UpstreamClient, method: str, url: httpx.URL | str, kwargs: dict[str, Any]
    ) -> None:
        self._client = client
        self._method = method
        self._url = url
        self._kwargs = kwargs
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        self._response = await self._client._send(self._method, self._url, stream=True, **self._kwargs)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


class UpstreamClient:
    """The pooled HTTP client of one provider instance (build it with `_http.build_client`).

    Args:
        headers: default headers of every request.
        timeout: the default `httpx.Timeout` of calls that pass none.
        max_connections: pool size (aiohttp `limit`).
        keepalive_expiry: seconds an idle pooled connection is kept.
        transport: delegate everything to an `httpx.AsyncClient` over this transport instead.

    Attributes, as on `httpx.AsyncClient`: `headers` (httpx's defaults merged with `headers`; read
    it, do not change it: requests use the merge made here), `timeout`, `follow_redirects` (False).

    The aiohttp session is created lazily on the running loop. The caller must `await aclose()`.
    """

    follow_redirects: Final = False

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        merged = httpx.Headers(
            {
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
                "Connection": "keep-alive",
                "User-Agent": USER_AGENT,
            }
        )
        merged.update(headers)
        self.headers: Final = merged
        self.timeout: Final = timeout
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._closed = False
        self._delegate = (
            None
            if transport is None
            else httpx.AsyncClient(
                headers=headers, timeout=timeout, follow_redirects=False, transport=transport
            )
        )
        # Lower-cased (name, value) pairs in httpx's order, as httpx hands them to a transport.
        self._base_headers = merged.multi_items()
        self._base_names = frozenset(name for name, _ in self._base_headers)
        self._client_timeout = _client_timeout(timeout)
        self._session: aiohttp.ClientSession | None = None
        # Proxies from the environment, read once; resolved once per (scheme, host).
        self._proxies = urllib.request.getproxies()
        self._proxy_by_origin: dict[tuple[str, str], str | None] = {}
        # Prepared targets by URL string, and by identity for `httpx.URL` objects (adapters reuse
        # theirs); the entry keeps the object alive, so its id cannot be reused while cached.
        self._targets: dict[str, _Target] = {}
        self._url_targets: dict[int, tuple[httpx.URL, _Target]] = {}

    # -- the adapters' API ------------------------------------------------------------------------

    async def post(
        self,
        url: httpx.URL | str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's API: per-phase timeouts)
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """POST and read the whole body (like `httpx.AsyncClient.post`)."""
        if self._delegate is not None:
            return await self._delegate.post(
                _with_params(url, params),
                content=content,
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
                auth=auth or _DEFAULT,
            )
        return await self._send(
            "POST",
            url,
            content=content,
            headers=headers,
            params=params,
            timeouts=timeout,
            auth=auth,
            stream=False,
        )

    async def get(
        self,
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's API: per-phase timeouts)
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """GET and read the whole body (like `httpx.AsyncClient.get`)."""
        if self._delegate is not None:
            return await self._delegate.get(
                _with_params(url, params),
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
                auth=auth or _DEFAULT,
            )
        return await self._send(
            "GET",
            url,
            content=None,
            headers=headers,
            params=params,
            timeouts=timeout,
            auth=auth,
            stream=False,
        )

    def stream(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
        auth: httpx.Auth | None = None,
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """Send on entering; the response body streams (`aiter_bytes`, `aread`) until exit."""
        if self._delegate is not None:
            return self._delegate.stream(
                method,
                _with_params(url, params),
                content=content,
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
                auth=auth or _DEFAULT,
            )
        return _Stream(
            self,
            method,
            url,
            {"content": content, "headers": headers, "params": params, "timeouts": timeout, "auth": auth},
        )

    async def aclose(self) -> None:
        """Close the pool (idempotent); later requests raise RuntimeError, as with httpx."""
        self._closed = True
        if self._delegate is not None:
            await self._delegate.aclose()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
            # Let aiohttp finish closing transports before the loop may end (no ResourceWarning).
            await asyncio.sleep(0)

    # -- sending ----------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        timeouts: httpx.Timeout | None,
        auth: httpx.Auth | None,
        stream: bool,
    ) -> httpx.Response:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        client_timeout = (
            self._client_timeout
            if timeouts is None or timeouts is self.timeout
            else _client_timeout(timeouts)
        )
        if auth is not None:
            return await self._send_with_auth(
                method,
                _with_params(url, params),
                content=content,
                headers=headers,
                timeouts=client_timeout,
                auth=auth,
                stream=stream,
            )
        if params is not None:
            target = self._target(_merge_params(url, params))
        elif isinstance(url, str):
            target = self._targets.get(url) or self._cache_str(url)
        else:
            cached = self._url_targets.get(id(url))
            target = cached[1] if cached is not None and cached[0] is url else self._cache_url(url)
        sent_url, host, proxy = target
        return await self._request(
            method,
            sent_url,
            headers=self._headers_for(method, host, headers, content),
            content=content,
            timeouts=client_timeout,
            proxy=proxy,
            stream=stream,
        )

    async def _request(
        self,
        method: str,
        url: yarl.URL,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None,
        timeouts: aiohttp.ClientTimeout,
        proxy: str | None,
        stream: bool,
    ) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._new_session()
        try:
            response = await session.request(
                method,
                url,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=timeouts,
                proxy=proxy,
            )
        except _AIOHTTP_ERRORS as exc:
            raise _map_error(exc, "connect") from exc
        if stream:
            return httpx.Response(
                response.status,
                headers=response.raw_headers,
                stream=_Body(response),
                extensions={"http_version": b"HTTP/1.1"},
            )
        try:
            body = await response.read()
        except BaseException as exc:
            response.close()
            if isinstance(exc, _AIOHTTP_ERRORS):
                raise _map_error(exc, "read") from exc
            raise
        response.release()
        # `stream=` rather than `content=`: the headers stay the upstream's (`content=` would add
        # a Content-Length to chunked answers).
        result = httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": b"HTTP/1.1"},
        )
        # httpx decodes Content-Encoding (gzip, deflate, ...) as its own client does. Setting the
        # read state by hand would save ~12 µs but write httpx's private attributes: not worth it.
        result.read()
        return result

    async def _send_with_auth(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeouts: aiohttp.ClientTimeout,
        auth: httpx.Auth,
        stream: bool,
    ) -> httpx.Response:
        """Run `auth`'s flow over a real `httpx.Request` (as httpx's client does) and send its
        requests as they are: method, URL, headers and body byte for byte."""
        merged = httpx.Headers(self.headers)
        merged.update(headers)
        request = httpx.Request(method, url, headers=merged, content=content)
        flow = auth.async_auth_flow(request)
        try:
            request = await flow.__anext__()
            while True:
                sent_url, _, proxy = self._target(request.url)
                response = await self._request(
                    request.method,
                    sent_url,
                    headers=request.headers.multi_items(),
                    content=request.content,
                    timeouts=timeouts,
                    proxy=proxy,
                    stream=stream,
                )
                try:
                    try:
                        next_request = await flow.asend(response)
                    except StopAsyncIteration:
                        return response
                    await response.aread()  # a challenge answer: read it, then send the next request
                    request = next_request
                except BaseException:
                    await response.aclose()
                    raise
        finally:
            await flow.aclose()

    # -- helpers ----------------------------------------------------------------------------------

    def _headers_for(
        self, method: str, host: str, headers: Mapping[str, str] | None, content: bytes | None
    ) -> list[tuple[str, str]]:
        """The header list httpx's client would send for this request (lower-cased names)."""
        items = list(self._base_headers)
        names = self._base_names
        if headers:
            extra = [(name.lower(), value) for name, value in headers.items()]
            added = {name for name, _ in extra}
            if not added.isdisjoint(names):
                items = [item for item in items if item[0] not in added]
            items += extra
            names = names | added
        has_length = "content-length" in names
        if content and not has_length:
            items.append(("content-length", str(len(content))))
            has_length = True
        auto: list[tuple[str, str]] = []
        if "host" not in names:
            auto.append(("host", host))
        if not has_length and "transfer-encoding" not in names and method in _BODY_METHODS:
            auto.append(("content-length", "0"))
        return auto + items if auto else items

    def _target(self, url: httpx.URL) -> _Target:
        # encoded=True: send httpx's URL byte for byte (yarl would otherwise re-quote it).
        return yarl.URL(str(url), encoded=True), url.netloc.decode("ascii"), self._proxy(url)

    def _cache_str(self, url: str) -> _Target:
        if len(self._targets) >= _URL_CACHE_SIZE:
            self._targets.clear()
        target = self._targets[url] = self._target(httpx.URL(url))
        return target

    def _cache_url(self, url: httpx.URL) -> _Target:
        if len(self._url_targets) >= _URL_CACHE_SIZE:
            self._url_targets.clear()
        target = self._target(url)
        self._url_targets[id(url)] = (url, target)
        return target

    def _proxy(self, url: httpx.URL) -> str | None:
        origin = (url.scheme, url.host)
        if origin not in self._proxy_by_origin:
            proxy = self._proxies.get(url.scheme)
            if proxy and urllib.request.proxy_bypass(url.host):
                proxy = None
            self._proxy_by_origin[origin] = proxy or None
        return self._proxy_by_origin[origin]

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_expiry,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes Content-Encoding itself
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )
        return self._session


def _with_params(url: httpx.URL | str, params: Mapping[str, Any] | None) -> httpx.URL | str:
    return url if params is None else _merge_params(url, params)


def _merge_params(url: httpx.URL | str, params: Mapping[str, Any]) -> httpx.URL:
    return (url if isinstance(url, httpx.URL) else httpx.URL(url)).copy_merge_params(params)


def _client_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read
    )
