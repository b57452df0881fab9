"""The aiohttp-backed httpx transport: failures map to httpx exceptions, connections are reused,
and closing an unfinished body drops the connection (the upstream sees the disconnect)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from homa_server.providers._aiohttp_transport import AiohttpTransport


class TinyServer:
    """A raw HTTP/1.1 server whose behaviour each test sets; counts connections and disconnects."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.disconnected = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if self.mode == "ok":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
                    )
                elif self.mode == "truncated":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    await writer.drain()
                    writer.close()
                    return
                elif self.mode == "endless":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    while True:
                        writer.write(b"5\r\nhello\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.01)
                elif self.mode == "silent":
                    await asyncio.sleep(30)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.disconnected.set()
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=4), timeout=2.0) as http:
        yield http


async def test_connections_are_reused(client: httpx.AsyncClient) -> None:
    server = TinyServer("ok")
    async with server as url:
        for _ in range(5):
            response = await client.post(f"{url}/x", content=b'{"a":1}')
            assert response.status_code == 200
            assert response.text == "ok"
    assert server.connections == 1


async def test_connection_refused_is_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")


async def test_silent_server_is_read_timeout(client: httpx.AsyncClient) -> None:
    async with TinyServer("silent") as url:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/", timeout=httpx.Timeout(0.2))


async def test_truncated_body_is_a_read_error(client: httpx.AsyncClient) -> None:
    async with TinyServer("truncated") as url:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(f"{url}/")


async def test_closing_an_unfinished_stream_drops_the_connection(client: httpx.AsyncClient) -> None:
    server = TinyServer("endless")
    async with server as url:
        async with client.stream("GET", f"{url}/") as response:
            async for chunk in response.aiter_bytes():
                assert chunk
                break
        await asyncio.wait_for(server.disconnected.wait(), timeout=1.0)


async def test_percent_encoding_is_sent_unchanged(client: httpx.AsyncClient) -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await client.get(f"http://127.0.0.1:{port}/model/arn%3Aaws%3Abedrock/x%2Fy/converse")
    finally:
        server.close()
    assert seen == [b"GET /model/arn%3Aaws%3Abedrock/x%2Fy/converse HTTP/1.1"]
