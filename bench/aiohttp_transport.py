"""A minimal httpx transport over aiohttp, for what-if measurements (`--aiohttp-transport`).

httpx's default transport is httpcore, whose connection pool costs far more CPU per request than
the HTTP exchange itself. This transport keeps httpx's API (so the gateway's adapters run
unchanged) and sends through one pooled `aiohttp.ClientSession` instead, which is what the
`httpx-aiohttp` package does properly. Benchmark use only: no proxies, no timeouts mapping, no
error mapping (aiohttp errors are not httpx errors). aiohttp is not a Homa dependency; install it
into the venv to use this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp  # type: ignore[import-not-found, unused-ignore]
import httpx

_SKIP = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one pooled aiohttp session (created lazily inside the loop)."""

    def __init__(self, limit: int = 200) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=None), auto_decompress=False
            )
        response = await self._session.request(
            request.method,
            str(request.url),
            headers={k.decode(): v.decode() for k, v in request.headers.raw},
            data=request.content,
            skip_auto_headers=_SKIP,
        )
        return httpx.Response(response.status, headers=response.raw_headers, stream=_Body(response))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
