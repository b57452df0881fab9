"""JWK parsing, the rate-limited JWKS cache (rotation, outages) and the httpx fetcher on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from homa_server.auth.jwks import (
    DecodeError,
    FetchError,
    JwksCache,
    b64url_decode,
    httpx_fetcher,
    parse_jwk,
    parse_jwks,
    strict_json_object,
)
from homa_server.auth.jwt_validator import JwtConfig, JwtValidator
from homa_server.auth.principal import REASON_AUTH_UNAVAILABLE
from homa_server.errors import Code, GatewayError
from tests.unit.auth import AUDIENCE, ISSUER, b64u, claims, ec_key, jwk_of, make_token, rs_signer, rsa_key

URL = "https://issuer.test/jwks"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeJwks:
    """Serves a mutable key list; counts fetches; can be made to fail."""

    def __init__(self, *kids: str) -> None:
        self.kids = list(kids)
        self.calls = 0
        self.fail = False

    async def __call__(self, url: str) -> bytes:
        assert url == URL
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise FetchError("HTTP 503")
        return json.dumps({"keys": [jwk_of(rsa_key(kid), kid) for kid in self.kids]}).encode()


def test_b64url_and_strict_json() -> None:
    assert b64url_decode(b64u(b"hello")) == b"hello"
    for bad in ("a", "ab=c", "a+b/", "ab c"):
        with pytest.raises(DecodeError):
            b64url_decode(bad)
    assert strict_json_object(b'{"a": 1}') == {"a": 1}
    for bad_json in (b'{"a":1,"a":2}', b"[1]", b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"[" * 5000):
        with pytest.raises(DecodeError):
            strict_json_object(bad_json)


def test_parse_jwk_accepts_only_public_signature_keys() -> None:
    rsa_entry = parse_jwk(jwk_of(rsa_key(), "r", alg="RS256", use="sig"))
    assert rsa_entry is not None
    assert isinstance(rsa_entry.key, rsa.RSAPublicKey)
    assert (rsa_entry.kid, rsa_entry.alg) == ("r", "RS256")
    ec_entry = parse_jwk(jwk_of(ec_key(), "e"))
    assert ec_entry is not None
    assert isinstance(ec_entry.key, ec.EllipticCurvePublicKey)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    bad_point = dict(jwk_of(ec_key(), "e"), y=jwk_of(ec_key("other"), "x")["y"])
    rejected: list[dict[str, Any]] = [
        {"kty": "oct", "k": b64u(b"secret"), "kid": "s"},
        jwk_of(rsa_key(), "enc", use="enc"),
        jwk_of(weak, "weak"),
        bad_point,
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
        {"kty": "RSA", "n": "!!", "e": "AQAB"},
        dict(jwk_of(rsa_key(), None), kid=7),
        {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
    ]
    for entry in rejected:
        assert parse_jwk(entry) is None


def test_parse_jwks_document_shape() -> None:
    good = json.dumps({"keys": [jwk_of(rsa_key(), "a"), {"kty": "oct"}, "junk"]}).encode()
    assert [k.kid for k in parse_jwks(good)] == ["a"]
    for bad in (b"{}", b'{"keys": {}}', b"[]", json.dumps({"keys": [{}] * 40}).encode()):
        with pytest.raises(DecodeError):
            parse_jwks(bad)


async def test_cache_fetches_once_and_reuses() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    cache = JwksCache(URL, fake, clock=clock)
    for _ in range(5):
        assert await cache.get_key("k1", "RS256") is not None
    assert fake.calls == 1


async def test_unknown_kid_refresh_is_rate_limited_and_picks_up_rotation() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    cache = JwksCache(URL, fake, clock=clock, min_refresh_interval_s=60)
    assert await cache.get_key("k1", "RS256") is not None
    assert fake.calls == 1
    clock.now += 61
    fake.kids = ["k1", "k2"]  # the issuer rotates in a new key
    assert await cache.get_key("k2", "RS256") is not None
    assert fake.calls == 2
    for i in range(20):  # unknown kids right after: no new fetch
        assert await cache.get_key(f"nope{i}", "RS256") is None
    assert fake.calls == 2
    clock.now += 30
    fake.kids = ["k2", "k3"]  # k1 retired, k3 added
    assert await cache.get_key("k3", "RS256") is None  # still rate limited
    assert fake.calls == 2
    clock.now += 31
    assert await cache.get_key("k3", "RS256") is not None
    assert fake.calls == 3
    assert await cache.get_key("k1", "RS256") is None  # removed keys stop verifying
    assert fake.calls == 3


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    cache = JwksCache(URL, fake, clock=clock)
    results = await asyncio.gather(*(cache.get_key("zz", "RS256") for _ in range(25)))
    assert results == [None] * 25
    assert fake.calls == 1


async def test_stale_keys_are_refreshed_after_max_age() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    cache = JwksCache(URL, fake, clock=clock, max_age_s=300)
    await cache.get_key("k1", "RS256")
    clock.now += 301
    await cache.get_key("k1", "RS256")
    assert fake.calls == 2


async def test_outage_without_keys_is_unavailable_and_retried_later() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    fake.fail = True
    cache = JwksCache(URL, fake, clock=clock, failure_retry_interval_s=5)
    for _ in range(3):
        with pytest.raises(GatewayError) as caught:
            await cache.get_key("k1", "RS256")
        assert caught.value.code == Code.UNAVAILABLE
        assert str(caught.value.reason) == REASON_AUTH_UNAVAILABLE
        assert caught.value.retryable
    assert fake.calls == 1
    clock.now += 6
    fake.fail = False
    assert await cache.get_key("k1", "RS256") is not None
    assert fake.calls == 2


async def test_outage_keeps_previous_keys() -> None:
    fake, clock = FakeJwks("k1"), Clock()
    cache = JwksCache(URL, fake, clock=clock, max_age_s=100)
    await cache.get_key("k1", "RS256")
    fake.fail = True
    clock.now += 200
    assert await cache.get_key("k1", "RS256") is not None
    assert await cache.get_key("other", "RS256") is None  # unknown kid with keys: just invalid
    assert fake.calls == 2


async def test_hanging_oversized_and_broken_fetches_are_outages() -> None:
    async def hang(url: str) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def huge(url: str) -> bytes:
        return b'{"keys": [' + b" " * 2_000_000 + b"]}"

    async def broken(url: str) -> bytes:
        raise RuntimeError("unexpected client failure")

    for fetch in (hang, huge, broken):
        cache = JwksCache(URL, fetch, timeout_s=0.05, max_bytes=64 * 1024, clock=Clock())
        with pytest.raises(GatewayError) as caught:
            await cache.get_key("k1", "RS256")
        assert caught.value.code == Code.UNAVAILABLE


# ---- httpx fetcher against a loopback server ---------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalServer:
    def __init__(self) -> None:
        self.base = ""
        self.hits: list[str] = []


@pytest.fixture
async def local() -> AsyncIterator[LocalServer]:
    state = LocalServer()
    jwks_body = json.dumps({"keys": [jwk_of(rsa_key(), "k1")]})

    async def jwks(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.path)
        return web.Response(text=jwks_body, content_type="application/json")

    async def error(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.path)
        return web.Response(status=500, text="boom")

    async def redirect(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.path)
        raise web.HTTPFound("/target")

    async def big(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.path)
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b" " * 16 * 1024)
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.path)
        await asyncio.sleep(1)
        return web.Response(text="{}")

    app = web.Application()
    for path, handler in {
        "/jwks": jwks,
        "/error": error,
        "/redirect": redirect,
        "/target": jwks,
        "/big": big,
        "/slow": slow,
    }.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_httpx_fetcher_success_and_failures(local: LocalServer) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        fetch = httpx_fetcher(client, max_bytes=64 * 1024, timeout_s=0.3)
        assert b'"k1"' in await fetch(local.base + "/jwks")
        for path in ("/error", "/redirect", "/big", "/slow"):
            with pytest.raises(FetchError):
                await fetch(local.base + path)
    assert "/target" not in local.hits  # redirects are never followed


async def test_validator_with_jwks_over_http(local: LocalServer) -> None:
    now = 1_900_000_000.0
    async with httpx.AsyncClient(trust_env=False) as client:
        cache = JwksCache(local.base + "/jwks", httpx_fetcher(client))
        validator = JwtValidator(
            JwtConfig(
                issuer=ISSUER,
                audiences=frozenset({AUDIENCE}),
                algorithms=frozenset({"RS256"}),
                jwks=cache,
                clock=lambda: now,
            )
        )
        token = make_token({"alg": "RS256", "kid": "k1"}, claims(now), rs_signer(rsa_key()))
        assert (await validator.validate(token)).subject == "user-1"
        assert (await validator.validate(token)).subject == "user-1"
    assert local.hits == ["/jwks"]
