"""RFC 7662 introspection against a fake authorisation server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest
from aiohttp import web

from homa_server.auth.introspection import IntrospectionConfig, Introspector, httpx_poster
from homa_server.auth.principal import (
    MSG_AUTH_UNAVAILABLE,
    MSG_INVALID_CREDENTIALS,
    REASON_AUTH_UNAVAILABLE,
    REASON_INVALID_CREDENTIALS,
)
from homa_server.errors import Code, GatewayError

NOW = 1_900_000_000.0
TOKEN = "opaque-canary-token-7f3a9c"
CLIENT_SECRET = "s3cr:et&canary"


class FakeAuthServer:
    """Answers introspection requests with `self.answer` (status, body) and records them."""

    def __init__(self) -> None:
        self.answer: tuple[int, Any] = (200, {"active": True})
        self.delay = 0.0
        self.requests: list[tuple[dict[str, str], dict[str, list[str]]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = parse_qs(await request.text())
        self.requests.append((dict(request.headers), form))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body = self.answer
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, content_type="application/json")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeAuthServer]:
    server = FakeAuthServer()
    app = web.Application()
    app.router.add_post("/introspect", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/introspect"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


def make(fake: FakeAuthServer, client: httpx.AsyncClient, clock: Clock, **overrides: Any) -> Introspector:
    options: dict[str, Any] = {
        "endpoint": fake.url,
        "client_id": "homa gateway",
        "client_secret": CLIENT_SECRET,
        "timeout_s": 0.3,
        "clock": clock,
    }
    options.update(overrides)
    return Introspector(IntrospectionConfig(**options), httpx_poster(client))


def active(**extra: Any) -> dict[str, Any]:
    body = {
        "active": True,
        "sub": "user-9",
        "tenant": "acme",
        "scope": "chat:write",
        "client_id": "app-1",
        "exp": int(NOW) + 3600,
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


async def test_active_token_maps_to_principal_with_client_auth(
    fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    fake.answer = (200, active())
    principal = await make(fake, client, Clock()).introspect(TOKEN)
    assert (principal.subject, principal.tenant, principal.method) == ("user-9", "acme", "oauth2")
    assert principal.scopes == frozenset({"chat:write"})
    assert principal.client_id == "app-1"
    assert principal.expires_at == NOW + 3600
    headers, form = fake.requests[0]
    assert form == {"token": [TOKEN], "token_type_hint": ["access_token"]}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("homa gateway", CLIENT_SECRET)


@pytest.mark.parametrize(
    "body",
    [
        {"active": False},
        {"active": "true"},
        {"active": 1},
        {"active": [True]},
        {"sub": "user-9", "tenant": "acme"},
        active(exp=int(NOW) - 1),
        active(exp="9999999999"),
        active(exp=True),
        active(nbf=int(NOW) + 60),
        active(tenant=None),
        active(sub=None, client_id=None),
        active(scope=["chat:write"]),
        active(sub="x\ny"),
    ],
)
async def test_inactive_or_unusable_answers_are_rejected_generically(
    body: dict[str, Any], fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    fake.answer = (200, body)
    with pytest.raises(GatewayError) as caught:
        await make(fake, client, Clock()).introspect(TOKEN)
    assert caught.value.code == Code.UNAUTHENTICATED
    assert str(caught.value.reason) == REASON_INVALID_CREDENTIALS
    assert caught.value.message == MSG_INVALID_CREDENTIALS


async def test_subject_falls_back_to_client_id_and_default_tenant(
    fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    fake.answer = (200, active(sub=None, tenant=None, exp=None))
    principal = await make(fake, client, Clock(), default_tenant="shared").introspect(TOKEN)
    assert (principal.subject, principal.tenant, principal.expires_at) == ("app-1", "shared", None)


async def test_issuer_and_audience_are_enforced_when_configured(
    fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    strict = make(fake, client, Clock(), issuer="https://as.test", audience="homa")
    fake.answer = (200, active(iss="https://as.test", aud=["x", "homa"]))
    assert (await strict.introspect("t-1")).subject == "user-9"
    for body in (active(iss="https://evil.test", aud="homa"), active(iss="https://as.test", aud="x")):
        fake.answer = (200, body)
        with pytest.raises(GatewayError):
            await make(fake, client, Clock(), issuer="https://as.test", audience="homa").introspect("t-2")


@pytest.mark.parametrize(
    ("answer", "delay"),
    [
        ((500, "oops"), 0.0),
        ((401, {"error": "invalid_client"}), 0.0),
        ((200, "not json"), 0.0),
        ((200, "[true]"), 0.0),
        ((302, ""), 0.0),
        ((200, active()), 1.0),
    ],
)
async def test_outages_fail_closed_as_unavailable_and_are_not_cached(
    answer: tuple[int, Any], delay: float, fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    fake.answer, fake.delay = answer, delay
    introspector = make(fake, client, Clock())
    for _ in range(2):
        with pytest.raises(GatewayError) as caught:
            await introspector.introspect(TOKEN)
        assert caught.value.code == Code.UNAVAILABLE
        assert str(caught.value.reason) == REASON_AUTH_UNAVAILABLE
        assert caught.value.message == MSG_AUTH_UNAVAILABLE
        assert caught.value.retryable
    assert introspector.request_count == 2


async def test_outage_policy_can_map_to_unauthenticated(
    fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    fake.answer = (503, "down")
    with pytest.raises(GatewayError) as caught:
        await make(fake, client, Clock(), errors_as_unauthenticated=True).introspect(TOKEN)
    assert caught.value.code == Code.UNAUTHENTICATED


async def test_oversized_answer_is_an_outage(client: httpx.AsyncClient, fake: FakeAuthServer) -> None:
    fake.answer = (200, active(padding="x" * 100_000))
    with pytest.raises(GatewayError) as caught:
        await make(fake, client, Clock()).introspect(TOKEN)
    assert caught.value.code == Code.UNAVAILABLE


async def test_positive_cache_is_bounded_by_token_expiry(
    fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    clock = Clock()
    fake.answer = (200, active(exp=int(NOW) + 10))
    introspector = make(fake, client, clock, max_cache_ttl_s=60)
    await introspector.introspect(TOKEN)
    clock.now += 9
    await introspector.introspect(TOKEN)
    assert introspector.request_count == 1
    clock.now += 2  # past exp: must ask again (and the server now says inactive)
    fake.answer = (200, {"active": False})
    with pytest.raises(GatewayError):
        await introspector.introspect(TOKEN)
    assert introspector.request_count == 2


async def test_positive_cache_is_bounded_by_max_ttl(fake: FakeAuthServer, client: httpx.AsyncClient) -> None:
    clock = Clock()
    fake.answer = (200, active())
    introspector = make(fake, client, clock, max_cache_ttl_s=60)
    await introspector.introspect(TOKEN)
    clock.now += 59
    await introspector.introspect(TOKEN)
    assert introspector.request_count == 1
    clock.now += 2
    await introspector.introspect(TOKEN)
    assert introspector.request_count == 2


async def test_negative_results_are_cached_briefly(fake: FakeAuthServer, client: httpx.AsyncClient) -> None:
    clock = Clock()
    fake.answer = (200, {"active": False})
    introspector = make(fake, client, clock, negative_cache_ttl_s=5)
    for _ in range(3):
        with pytest.raises(GatewayError):
            await introspector.introspect(TOKEN)
    assert introspector.request_count == 1
    clock.now += 6
    fake.answer = (200, active())
    assert (await introspector.introspect(TOKEN)).subject == "user-9"
    assert introspector.request_count == 2


async def test_cache_is_bounded(fake: FakeAuthServer, client: httpx.AsyncClient) -> None:
    fake.answer = (200, active())
    introspector = make(fake, client, Clock(), max_cache_entries=2)
    for token in ("a", "b", "c", "a"):
        await introspector.introspect(token)
    assert introspector.request_count == 4  # "a" was evicted


@pytest.mark.parametrize("token", ["", "x" * 9000, "tok\u00e9n"])
async def test_bad_tokens_are_rejected_without_a_request(
    token: str, fake: FakeAuthServer, client: httpx.AsyncClient
) -> None:
    introspector = make(fake, client, Clock())
    with pytest.raises(GatewayError) as caught:
        await introspector.introspect(token)
    assert caught.value.code == Code.UNAUTHENTICATED
    assert introspector.request_count == 0


async def test_no_token_or_secret_in_logs_or_errors(
    fake: FakeAuthServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for answer in ((500, "x"), (200, {"active": False}), (200, "junk")):
        fake.answer = answer
        try:
            await make(fake, client, Clock()).introspect(TOKEN)
        except GatewayError as error:
            errors.append(repr(error) + str(error))
    text = caplog.text + "".join(errors) + repr([r.__dict__ for r in caplog.records])
    assert TOKEN not in text
    assert CLIENT_SECRET not in text
    assert "s3cr" not in text


def test_configuration_is_checked() -> None:
    async def post(url: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        return 200, b"{}"

    with pytest.raises(ValueError):
        Introspector(IntrospectionConfig(endpoint="https://as.test", client_id="a", client_secret=""), post)
