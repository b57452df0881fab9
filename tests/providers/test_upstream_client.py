"""`UpstreamClient`, the adapters' HTTP client: what goes on the wire matches httpx's client, bodies
and failures come back as httpx would return and raise them, the pool reuses connections, and
closing an unfinished stream drops its connection (the upstream sees the disconnect)."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from homa_server.providers._http import UpstreamClient, build_client
from homa_server.settings import ProviderSettings

Reply = Callable[[bytes, bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (head, body); returns False to close the connection."""


def http_response(status: int = 200, body: bytes = b"ok", headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def reply_ok(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(http_response(body=b"ok", headers=("Content-Type: text/plain",)))
    return True


class RawServer:
    """A raw HTTP/1.1 server: records request heads and bodies, counts connections and EOFs."""

    def __init__(self, reply: Reply = reply_ok) -> None:
        self.reply = reply
        self.requests: list[tuple[bytes, bytes]] = []
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
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                keep = await self.reply(head, body, reader, writer)
                await writer.drain()
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.disconnected.set()
            writer.close()

    def header_lines(self, index: int = -1) -> list[tuple[str, str]]:
        """The (name, value) header lines of a recorded request, in wire order and spelling."""
        lines = self.requests[index][0].decode("latin-1").split("\r\n")[1:]
        return [(line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in lines if line]

    def request_line(self, index: int = -1) -> str:
        return self.requests[index][0].split(b"\r\n", 1)[0].decode("latin-1")

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


SETTINGS = ProviderSettings(kind="openai", connect_timeout_s=2.0, read_timeout_s=2.0, max_connections=4)
DEFAULTS = {"Authorization": "Bearer k", "X-Version": "1", "Accept": "application/json"}


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    http = build_client(SETTINGS, headers=DEFAULTS)
    try:
        yield http
    finally:
        await http.aclose()


def httpx_headers(
    defaults: dict[str, str] | None,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    content: bytes | None,
) -> list[tuple[str, str]]:
    """The headers httpx's own client hands its transport for the same call."""
    reference = httpx.AsyncClient(
        headers=defaults, transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    return reference.build_request(method, url, headers=headers, content=content).headers.multi_items()


# ---- headers ------------------------------------------------------------------------------------


async def test_call_headers_override_defaults_case_insensitively(client: UpstreamClient) -> None:
    server = RawServer()
    async with server as url:
        response = await client.post(
            f"{url}/v1/chat",
            content=b'{"a":1}',
            headers={"x-version": "2", "Content-Type": "application/json", "ACCEPT": "text/plain"},
        )
    assert response.status_code == 200
    lines = server.header_lines()
    names = [name.lower() for name, _ in lines]
    assert len(names) == len(set(names)), lines  # no header twice, whatever its spelling
    sent = dict(lines)
    assert sent["x-version"] == "2"
    assert sent["accept"] == "text/plain"
    assert sent["authorization"] == "Bearer k"
    assert sent["content-type"] == "application/json"
    assert sent["content-length"] == "7"
    assert sent["host"] == url.removeprefix("http://")
    assert sent["user-agent"] == f"python-httpx/{httpx.__version__}"
    assert server.requests[-1][1] == b'{"a":1}'


async def test_wire_headers_are_those_httpx_would_send(client: UpstreamClient) -> None:
    server = RawServer()
    calls: list[tuple[str, dict[str, str] | None, bytes | None]] = [
        ("POST", {"Content-Type": "application/json", "x-request-id": "r1"}, b"{}"),
        ("POST", None, b""),  # an empty POST still says Content-Length: 0
        ("GET", {"x-goog-api-client": "homa"}, None),
        ("GET", None, None),
    ]
    async with server as url:
        for method, headers, content in calls:
            if method == "POST":
                await client.post(f"{url}/p", content=content, headers=headers)
            else:
                await client.get(f"{url}/g", headers=headers)
    for index, (method, headers, content) in enumerate(calls):
        expected = httpx_headers(DEFAULTS, method, f"{url}/x", headers, content)
        # aiohttp adds a Content-Type to bodies without one, as it did under httpx's client.
        sent = [(n, v) for n, v in server.header_lines(index) if n != "Content-Type"]
        assert sent == expected


header_names = st.sampled_from(
    ["Accept", "accept", "X-Key", "x-key", "X-KEY", "Content-Type", "User-Agent", "Host"]
)
header_maps = st.dictionaries(header_names, st.text(alphabet="abc123 /", min_size=1, max_size=5), max_size=4)


@given(
    defaults=header_maps,
    headers=st.none() | header_maps,
    method=st.sampled_from(["GET", "POST"]),
    content=st.none() | st.binary(max_size=3),
)
def test_header_merging_matches_httpx(
    defaults: dict[str, str], headers: dict[str, str] | None, method: str, content: bytes | None
) -> None:
    if method == "GET":
        content = None
    upstream = UpstreamClient(headers=defaults, timeout=httpx.Timeout(1.0), max_connections=1)
    assert upstream._headers_for(method, "h.example:8080", headers, content) == httpx_headers(
        defaults, method, "http://h.example:8080/x", headers, content
    )


# ---- URLs and params ----------------------------------------------------------------------------


async def test_params_are_merged_into_the_query_and_encoded_like_httpx(client: UpstreamClient) -> None:
    server = RawServer()
    params = {"limit": 20, "after_id": "m/1 ü&=", "type": "text"}
    async with server as url:
        await client.get(f"{url}/v1/models", params=params)
        await client.get(httpx.URL(f"{url}/v1/models?existing=a b&x=%2F"), params={"page": "2"})
    reference = httpx.AsyncClient().build_request("GET", f"{url}/v1/models", params=params)
    assert server.request_line(0) == f"GET {reference.url.raw_path.decode()} HTTP/1.1"
    assert server.request_line(0) == "GET /v1/models?limit=20&after_id=m%2F1+%C3%BC%26%3D&type=text HTTP/1.1"
    assert server.request_line(1) == "GET /v1/models?existing=a+b&x=%2F&page=2 HTTP/1.1"


async def test_percent_encoding_is_sent_unchanged(client: UpstreamClient) -> None:
    server = RawServer()
    path = "/model/arn%3Aaws%3Abedrock/x%2Fy/converse?q=%2F"
    async with server as url:
        await client.post(f"{url}{path}", content=b"{}")
        await client.post(httpx.URL(f"{url}{path}"), content=b"{}")
    assert server.request_line(0) == server.request_line(1) == f"POST {path} HTTP/1.1"


def test_timeouts_map_to_aiohttp() -> None:
    upstream = UpstreamClient(headers=None, timeout=httpx.Timeout(7.0, connect=3.0), max_connections=1)
    default = upstream._client_timeout
    assert (default.total, default.sock_connect, default.sock_read, default.connect) == (None, 3.0, 7.0, 7.0)
    assert upstream.timeout.connect == 3.0
    assert not upstream.follow_redirects


# ---- bodies -------------------------------------------------------------------------------------


async def reply_gzip(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    payload = gzip.compress(b'{"ok":true}' * 100)
    writer.write(
        http_response(body=payload, headers=("Content-Encoding: gzip", "Content-Type: application/json"))
    )
    return True


async def test_gzip_bodies_are_decoded(client: UpstreamClient) -> None:
    async with RawServer(reply_gzip) as url:
        response = await client.post(f"{url}/x", content=b"{}")
        assert response.content == b'{"ok":true}' * 100
        assert response.headers["content-encoding"] == "gzip"  # the upstream's headers, unchanged
        async with client.stream("POST", f"{url}/x", content=b"{}") as streamed:
            assert b"".join([chunk async for chunk in streamed.aiter_bytes()]) == b'{"ok":true}' * 100
        async with client.stream("GET", f"{url}/x") as streamed:
            assert await streamed.aread() == b'{"ok":true}' * 100


async def reply_chunked(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n"
        b'Content-Type: application/json\r\n\r\n6\r\n{"a": \r\n2\r\n1}\r\n0\r\n\r\n'
    )
    return True


async def test_read_responses_are_complete_httpx_responses(client: UpstreamClient) -> None:
    async with RawServer(reply_chunked) as url:
        response = await client.post(f"{url}/x", content=b"{}")
    assert isinstance(response, httpx.Response)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert "content-length" not in response.headers  # nothing added to the upstream's headers
    assert response.content == b'{"a": 1}'
    assert response.text == '{"a": 1}'
    assert response.json() == {"a": 1}
    assert response.http_version == "HTTP/1.1"
    assert response.is_closed
    assert response.is_stream_consumed
    assert response.num_bytes_downloaded == 8
    assert await response.aread() == b'{"a": 1}'
    assert [chunk async for chunk in response.aiter_bytes()] == [b'{"a": 1}']


# ---- failures -----------------------------------------------------------------------------------


async def test_connection_refused_is_connect_error(client: UpstreamClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(httpx.ConnectError):
        async with client.stream("POST", f"http://127.0.0.1:{port}/", content=b"{}"):
            pass


async def reply_nothing(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    await reader.read()  # say nothing until the client disconnects
    return False


async def test_silent_server_is_read_timeout(client: UpstreamClient) -> None:
    async with RawServer(reply_nothing) as url:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{url}/", content=b"{}", timeout=httpx.Timeout(0.2))


async def reply_stalled_body(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    await writer.drain()
    await reader.read()  # until the client disconnects
    return False


async def test_stalled_body_is_read_timeout(client: UpstreamClient) -> None:
    async with RawServer(reply_stalled_body) as url:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/", timeout=httpx.Timeout(0.2))
        async with client.stream("GET", f"{url}/", timeout=httpx.Timeout(0.2)) as response:
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()


async def reply_truncated(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    return False


async def test_truncated_body_is_a_read_error(client: UpstreamClient) -> None:
    async with RawServer(reply_truncated) as url:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(f"{url}/")
        async with client.stream("GET", f"{url}/") as response:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                async for _ in response.aiter_bytes():
                    pass


async def reply_close(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    return False


async def test_closed_without_answer_is_remote_protocol_error(client: UpstreamClient) -> None:
    async with RawServer(reply_close) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{url}/", content=b"{}")


async def test_waiting_for_a_pooled_connection_is_connect_timeout() -> None:
    http = build_client(ProviderSettings(kind="openai", max_connections=1))
    try:
        async with RawServer(reply_endless) as url, http.stream("GET", f"{url}/") as held:
            assert held.status_code == 200  # holds the only connection
            with pytest.raises(httpx.ConnectTimeout):
                await http.get(f"{url}/", timeout=httpx.Timeout(5.0, pool=0.2))
    finally:
        await http.aclose()


async def test_closed_client_refuses_requests() -> None:
    http = build_client(SETTINGS)
    await http.aclose()
    await http.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        await http.get("http://127.0.0.1:1/")


# ---- the pool -----------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(client: UpstreamClient) -> None:
    server = RawServer()
    async with server as url:
        for _ in range(3):
            assert (await client.post(f"{url}/x", content=b'{"a":1}')).text == "ok"
        assert (await client.get(f"{url}/x")).text == "ok"
        async with client.stream("POST", f"{url}/x", content=b"{}") as response:
            assert await response.aread() == b"ok"  # a complete body goes back to the pool
        async with client.stream("POST", f"{url}/x", content=b"{}") as response:
            assert [chunk async for chunk in response.aiter_bytes()] == [b"ok"]
        assert (await client.get(f"{url}/x")).text == "ok"
    assert server.connections == 1
    assert len(server.requests) == 7


async def reply_endless(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
    while True:
        writer.write(b"5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)


async def test_closing_an_unfinished_stream_drops_the_connection(client: UpstreamClient) -> None:
    server = RawServer(reply_endless)
    async with server as url:
        async with client.stream("POST", f"{url}/", content=b"{}") as response:
            async for chunk in response.aiter_bytes():
                assert chunk
                break
        await asyncio.wait_for(server.disconnected.wait(), timeout=1.0)


async def test_cancelling_a_read_drops_the_connection(client: UpstreamClient) -> None:
    server = RawServer(reply_stalled_body)
    async with server as url:
        with pytest.raises(TimeoutError):  # the caller's asyncio.timeout, not a transport error
            async with asyncio.timeout(0.2):
                await client.get(f"{url}/")
        await asyncio.wait_for(server.disconnected.wait(), timeout=1.0)


# ---- auth ---------------------------------------------------------------------------------------


class Signer(httpx.Auth):
    """Signs over the exact method, raw path and body (like SigV4), in one step."""

    requires_request_body = True

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        request.headers["X-Signature"] = (
            f"{request.method} {request.url.raw_path.decode()} {request.content!r}"
        )
        yield request


async def test_auth_flow_signs_what_is_sent(client: UpstreamClient) -> None:
    server = RawServer()
    async with server as url:
        await client.post(
            f"{url}/model/a%3Ab/converse", content=b'{"x":2}', headers={"Content-Type": "a/b"}, auth=Signer()
        )
        await client.get(httpx.URL(f"{url}/models"), params={"type": "SYSTEM"}, auth=Signer())
        async with client.stream("POST", f"{url}/s", content=b"{}", auth=Signer()) as response:
            assert await response.aread() == b"ok"
    assert dict(server.header_lines(0))["x-signature"] == "POST /model/a%3Ab/converse b'{\"x\":2}'"
    assert server.request_line(0) == "POST /model/a%3Ab/converse HTTP/1.1"
    assert dict(server.header_lines(1))["x-signature"] == "GET /models?type=SYSTEM b''"
    assert dict(server.header_lines(2))["x-signature"] == "POST /s b'{}'"
    expected = httpx_headers(DEFAULTS, "POST", f"{url}/x", {"Content-Type": "a/b"}, b'{"x":2}')
    assert server.header_lines(0)[: len(expected)] == expected
    assert server.connections == 1


class Challenged(httpx.Auth):
    """Two steps: send, and on 401 send again with the token the challenge asked for."""

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = "Token " + response.headers["x-token"]
            yield request


async def reply_challenge(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    if b"Token t1" in head:
        writer.write(http_response(body=b"welcome"))
    else:
        writer.write(http_response(401, body=b"who?", headers=("x-token: t1",)))
    return True


async def test_multi_step_auth_flows_run_to_the_end(client: UpstreamClient) -> None:
    server = RawServer(reply_challenge)
    async with server as url:
        assert (await client.post(f"{url}/", content=b"{}", auth=Challenged())).text == "welcome"
        async with client.stream("GET", f"{url}/", auth=Challenged()) as response:
            assert await response.aread() == b"welcome"
    assert len(server.requests) == 4
    assert server.connections == 1


# ---- proxies ------------------------------------------------------------------------------------


async def test_environment_proxies_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = RawServer()
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "")
        http = build_client(SETTINGS)
        try:
            assert (await http.get("http://upstream.invalid/v1/models")).text == "ok"
        finally:
            await http.aclose()
    assert proxy.request_line() == "GET http://upstream.invalid/v1/models HTTP/1.1"


# ---- transport= ---------------------------------------------------------------------------------


async def test_a_transport_is_used_through_httpx() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await request.aread()
        return httpx.Response(200, json={"path": request.url.path})

    http = build_client(SETTINGS, headers=DEFAULTS, transport=httpx.MockTransport(handler))
    try:
        posted = await http.post(
            "http://vendor.example/v1/chat",
            content=b"{}",
            headers={"x-version": "2"},
            timeout=httpx.Timeout(1.0),
            auth=Signer(),
        )
        listed = await http.get(httpx.URL("http://vendor.example/v1/models?a=1"), params={"b": "2"})
        async with http.stream("POST", "http://vendor.example/v1/stream", content=b"{}") as streamed:
            body = await streamed.aread()
    finally:
        await http.aclose()
    assert posted.json() == {"path": "/v1/chat"}
    assert orjson.loads(body) == {"path": "/v1/stream"}
    assert listed.status_code == 200
    first = seen[0]
    assert first.headers["x-version"] == "2"
    assert first.headers["authorization"] == "Bearer k"
    assert first.headers["x-signature"] == "POST /v1/chat b'{}'"
    assert first.extensions["timeout"] == httpx.Timeout(1.0).as_dict()
    assert str(seen[1].url) == "http://vendor.example/v1/models?a=1&b=2"
    assert seen[2].extensions["timeout"] == SETTINGS_TIMEOUT.as_dict()
    with pytest.raises(RuntimeError):
        await http.get("http://vendor.example/")


SETTINGS_TIMEOUT = httpx.Timeout(2.0, connect=2.0)
