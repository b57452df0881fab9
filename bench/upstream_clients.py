"""CPU cost per upstream request of the HTTP clients a provider adapter could use, against the mock.

    python -m bench.upstream_clients [--requests 3000] [--concurrency 1,32]

Starts the mock upstream, then in this process (on uvloop) sends the benchmark's Chat Completions
body with each client and reports this process's CPU time (time.process_time) per request: the
mock runs in its own process, so only the client side is counted. Clients:
- `httpx` row: the client the gateway builds (homa_server.providers._http.build_client), which is
  now `UpstreamClient` (aiohttp's pool behind httpx's API; the label is historical);
- `httpx/aiohttp`: a plain `httpx.AsyncClient` over a minimal aiohttp transport, the what-if that
  led to `UpstreamClient`: prices httpx's client pipeline on top of aiohttp;
- `aiohttp`: aiohttp alone;
- `raw`: a minimal keep-alive HTTP/1.1 client on asyncio streams, a lower bound.
Unary requests read and parse the JSON answer; streaming requests read the SSE body to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import payloads
from bench.processes import free_port, start_mock

Send = Callable[[bool], Awaitable[int]]


async def _httpx_client(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from homa_server.providers._http import build_client  # noqa: PLC0415
    from homa_server.settings import ProviderSettings  # noqa: PLC0415

    client = build_client(
        ProviderSettings(kind="openai"),
        headers={"User-Agent": "homa-gateway", "Accept": "application/json", "Authorization": "Bearer sk"},
    )
    headers = {"Content-Type": "application/json"}
    bodies = {False: payloads.direct_body(False), True: payloads.direct_body(True)}

    async def send(stream: bool) -> int:
        if not stream:
            response = await client.post(url, content=bodies[False], headers=headers)
            return len(orjson.loads(response.content))
        size = 0
        async with client.stream("POST", url, content=bodies[True], headers=headers) as response:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
        return size

    return send, client.aclose


async def _aiohttp_client(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, ttl_dns_cache=None),
        headers={"User-Agent": "homa-gateway", "Accept": "application/json", "Authorization": "Bearer sk"},
        auto_decompress=False,
    )
    headers = {"Content-Type": "application/json"}
    bodies = {False: payloads.direct_body(False), True: payloads.direct_body(True)}

    async def send(stream: bool) -> int:
        async with session.post(url, data=bodies[stream], headers=headers) as response:
            if not stream:
                return len(orjson.loads(await response.read()))
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
            return size

    return send, session.close


async def _httpx_over_aiohttp(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from bench.aiohttp_transport import AiohttpTransport  # noqa: PLC0415
    from homa_server.providers._http import build_client  # noqa: PLC0415
    from homa_server.settings import ProviderSettings  # noqa: PLC0415

    client = build_client(
        ProviderSettings(kind="openai"),
        headers={"User-Agent": "homa-gateway", "Accept": "application/json", "Authorization": "Bearer sk"},
        transport=AiohttpTransport(),
    )
    headers = {"Content-Type": "application/json"}
    bodies = {False: payloads.direct_body(False), True: payloads.direct_body(True)}

    async def send(stream: bool) -> int:
        if not stream:
            response = await client.post(url, content=bodies[False], headers=headers)
            return len(orjson.loads(response.content))
        size = 0
        async with client.stream("POST", url, content=bodies[True], headers=headers) as response:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
        return size

    return send, client.aclose


class _RawPool:
    """Keep-alive HTTP/1.1 connections over asyncio streams; Content-Length and chunked bodies."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def send(self, stream: bool) -> int:
        conn = self._idle.pop() if self._idle else await self._open()
        reader, writer = conn
        body = payloads.direct_body(stream)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        size = 0
        if b"transfer-encoding: chunked" in head.lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                length = int(line.strip(), 16)
                await reader.readexactly(length + 2)
                size += length
                if length == 0:
                    break
        else:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            data = await reader.readexactly(length)
            size = len(orjson.loads(data))
        self._idle.append(conn)
        return size

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._all.append(writer)
        return reader, writer

    async def aclose(self) -> None:
        for writer in self._all:
            writer.close()


async def _measure(send: Send, stream: bool, requests: int, concurrency: int) -> float:
    for _ in range(min(200, requests)):  # warm-up: connections, caches
        await send(stream)
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await send(stream)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / (per_worker * concurrency) * 1e6


async def _run(port: int, requests: int, levels: list[int]) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    rows = []
    clients: list[tuple[str, Callable[[], Awaitable[tuple[Send, Callable[[], Awaitable[None]]]]]]] = []
    clients.append(("httpx", lambda: _httpx_client(url)))
    if importlib.util.find_spec("aiohttp") is not None:
        clients.append(("httpx/aiohttp", lambda: _httpx_over_aiohttp(url)))
        clients.append(("aiohttp", lambda: _aiohttp_client(url)))

    async def raw() -> tuple[Send, Callable[[], Awaitable[None]]]:
        pool = _RawPool(port)
        return pool.send, pool.aclose

    clients.append(("raw", raw))
    sniffio_state = "present" if importlib.util.find_spec("sniffio") else "missing"
    for name, factory in clients:
        send, close = await factory()
        try:
            for stream in (False, True):
                for level in levels:
                    cpu = await _measure(send, stream, requests, level)
                    label = f"httpx (sniffio {sniffio_state})" if name == "httpx" else name
                    rows.append(
                        {"client": label, "stream": stream, "concurrency": level, "cpu_us": round(cpu)}
                    )
                    kind = "stream" if stream else "unary"
                    print(f"  {label:<24} {kind:<6} c={level:<3} {cpu:8.0f} CPU-us/request")
        finally:
            await close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_clients")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if not 1 <= args.requests <= 100_000 or any(not 1 <= c <= 256 for c in levels):
        raise SystemExit("--requests must be within 1..100000 and concurrency within 1..256")
    with tempfile.TemporaryDirectory(prefix="homa-clients-") as work:
        port = free_port()
        mock = start_mock(Path(work), port, stream_chunks=16)
        try:
            print(f"python {sys.version.split()[0]}, mock on :{port}")
            uvloop.run(_run(port, args.requests, levels))
        finally:
            mock.stop()


if __name__ == "__main__":
    main()
