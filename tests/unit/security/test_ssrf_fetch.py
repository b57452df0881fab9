"""fetch(): pinned connections, no redirects, bounded size and time — against servers on 127.0.0.1 only.

"Public" host names are simulated with an injected resolver that answers 127.0.0.1 plus an allow-list
entry, because the only server these tests may reach is a local one.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from homa_server.security.ssrf import (
    URL_DESTINATION_FORBIDDEN,
    URL_FETCH_FAILED,
    URL_FETCH_TIMEOUT,
    URL_INVALID,
    URL_REDIRECT_NOT_FOLLOWED,
    URL_RESPONSE_TOO_LARGE,
    Allowlist,
    OutboundUrlError,
    PinnedResolver,
    ResolvedTarget,
    fetch,
)

LOOPBACK_ONLY = Allowlist.from_entries(["127.0.0.1/32"])


@dataclass
class Local:
    port: int
    hits: dict[str, int] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)


def _app(local: Local) -> web.Application:
    async def record(request: web.Request) -> None:
        local.hits[request.path] = local.hits.get(request.path, 0) + 1
        local.hosts.append(request.headers.get("Host", ""))

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="hello", headers={"X-Seen-Host": request.headers.get("Host", "")})

    async def echo(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=await request.read(), status=201)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound(f"http://127.0.0.1:{local.port}/internal")

    async def internal(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="internal secret")

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * 200_000)

    async def stream(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 10_000)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_post("/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/internal", internal)
    app.router.add_get("/big", big)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    return app


async def _serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Local]:
    local = Local(port=0)
    runner = web.AppRunner(_app(local), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    local.port = int(runner.addresses[0][1])
    try:
        yield local
    finally:
        await runner.cleanup()


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    async for value in _serve():
        yield value


class Resolver:
    """First answer `first`, every later answer `later` (a DNS-rebinding attacker)."""

    def __init__(self, first: list[str], later: list[str] | None = None) -> None:
        self.first, self.later = first, later if later is not None else first
        self.calls = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        return self.first if self.calls == 1 else self.later


async def test_plain_fetch_reaches_allowlisted_local_server(local: Local) -> None:
    response = await fetch(f"http://127.0.0.1:{local.port}/ok", allowlist=LOOPBACK_ONLY)
    assert (response.status, response.body) == (200, b"hello")
    assert response.target.address == "127.0.0.1"


async def test_blocked_url_is_refused_before_any_connection(local: Local) -> None:
    with pytest.raises(OutboundUrlError) as info:
        await fetch(f"http://127.0.0.1:{local.port}/ok")
    assert str(info.value.reason) == URL_DESTINATION_FORBIDDEN
    with pytest.raises(OutboundUrlError):
        await fetch(f"http://0x7f000001:{local.port}/ok")
    assert local.hits == {}


async def test_dns_rebinding_cannot_move_the_pinned_connection(local: Local) -> None:
    # The check sees 127.0.0.1 (allow-listed); any later look-up would answer 127.0.0.2, where nothing
    # listens, and the system resolver does not know `rebind.test` at all. The request succeeds and DNS
    # was asked exactly once: the connection used the pinned, checked address.
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    response = await fetch(f"http://rebind.test:{local.port}/ok", allowlist=LOOPBACK_ONLY, resolver=resolver)
    assert response.status == 200
    assert resolver.calls == 1
    assert response.headers["X-Seen-Host"] == f"rebind.test:{local.port}"  # original Host header


async def test_internationalised_host_is_pinned_and_sent_as_punycode(local: Local) -> None:
    allow = Allowlist.from_entries(["bücher.test"])
    response = await fetch(
        f"http://bücher.test:{local.port}/ok", allowlist=allow, resolver=Resolver(["127.0.0.1"])
    )
    assert response.status == 200
    assert response.target.host == "xn--bcher-kva.test"
    assert local.hosts == [f"xn--bcher-kva.test:{local.port}"]


async def test_dns_rebinding_to_a_private_address_is_refused_at_check(local: Local) -> None:
    resolver = Resolver(["10.0.0.7"])
    with pytest.raises(OutboundUrlError) as info:
        await fetch(f"http://rebind.test:{local.port}/ok", resolver=resolver)
    assert str(info.value.reason) == URL_DESTINATION_FORBIDDEN
    assert local.hits == {}


async def test_pinned_resolver_answers_only_the_checked_host() -> None:
    target = ResolvedTarget("https", "api.example.test", 443, "93.184.216.34", ("93.184.216.34",), "x")
    resolver = PinnedResolver(target)
    [answer] = await resolver.resolve("API.example.test.", 443, socket.AF_INET)
    assert (answer["host"], answer["port"], answer["family"]) == ("93.184.216.34", 443, socket.AF_INET)
    with pytest.raises(OSError, match="refuses"):
        await resolver.resolve("evil.test", 443)
    six = PinnedResolver(ResolvedTarget("http", "v6.test", 80, "2606:4700:4700::1111"))
    [answer] = await six.resolve("v6.test", 80, socket.AF_INET6)
    assert answer["family"] == socket.AF_INET6
    await resolver.close()


async def test_redirect_to_loopback_is_not_followed(local: Local) -> None:
    allow = Allowlist.from_entries(["public.test"])
    resolver = Resolver(["127.0.0.1"])
    url = f"http://public.test:{local.port}/redirect"
    with pytest.raises(OutboundUrlError) as info:
        await fetch(url, allowlist=allow, resolver=resolver)
    assert str(info.value.reason) == URL_REDIRECT_NOT_FOLLOWED
    assert "internal" not in info.value.message

    response = await fetch(url, allowlist=allow, resolver=Resolver(["127.0.0.1"]), raise_on_redirect=False)
    assert response.status == 302
    assert response.location == f"http://127.0.0.1:{local.port}/internal"
    assert response.body == b""
    assert local.hits.get("/redirect") == 2
    assert "/internal" not in local.hits  # never followed


async def test_post_with_body_and_headers(local: Local) -> None:
    response = await fetch(
        f"http://127.0.0.1:{local.port}/echo",
        method="POST",
        data=b'{"event":"done"}',
        headers={"Content-Type": "application/json"},
        allowlist=LOOPBACK_ONLY,
    )
    assert (response.status, response.body) == (201, b'{"event":"done"}')


async def test_response_size_is_bounded(local: Local) -> None:
    for path in ("/big", "/stream"):
        with pytest.raises(OutboundUrlError) as info:
            await fetch(f"http://127.0.0.1:{local.port}{path}", allowlist=LOOPBACK_ONLY, max_bytes=50_000)
        assert str(info.value.reason) == URL_RESPONSE_TOO_LARGE
    response = await fetch(
        f"http://127.0.0.1:{local.port}/stream", allowlist=LOOPBACK_ONLY, max_bytes=500_000
    )
    assert len(response.body) == 500_000


async def test_total_time_is_bounded(local: Local) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutboundUrlError) as info:
        await fetch(f"http://127.0.0.1:{local.port}/slow", allowlist=LOOPBACK_ONLY, timeout_s=0.3)
    assert str(info.value.reason) == URL_FETCH_TIMEOUT
    assert info.value.retryable
    assert loop.time() - started < 2


async def test_connection_refused_is_a_fetch_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OutboundUrlError) as info:
        await fetch(f"http://127.0.0.1:{port}/", allowlist=LOOPBACK_ONLY)
    assert str(info.value.reason) == URL_FETCH_FAILED


async def test_fetch_propagates_check_errors() -> None:
    with pytest.raises(OutboundUrlError) as info:
        await fetch("http://user:pw@127.0.0.1/", allowlist=LOOPBACK_ONLY)
    assert str(info.value.reason) == URL_INVALID


# ---------------------------------------------------------------------------------------------- TLS


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_uses_the_original_host_for_sni_and_verification(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path, "pinned.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    seen_sni: list[str | None] = []

    def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_ctx.sni_callback = remember_sni
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    allow = Allowlist.from_entries(["127.0.0.1/32"])
    async for tls in _serve(server_ctx):
        response = await fetch(
            f"https://pinned.test:{tls.port}/ok",
            allowlist=allow,
            resolver=Resolver(["127.0.0.1"]),
            ssl=client_ctx,
        )
        assert response.status == 200
        assert seen_sni == ["pinned.test"]
        # Same address, different name: the certificate does not match, so the fetch fails.
        with pytest.raises(OutboundUrlError) as info:
            await fetch(
                f"https://other.test:{tls.port}/ok",
                allowlist=allow,
                resolver=Resolver(["127.0.0.1"]),
                ssl=client_ctx,
            )
        assert str(info.value.reason) == URL_FETCH_FAILED
        assert ipaddress.ip_address(response.target.address).is_loopback
