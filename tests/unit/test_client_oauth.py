"""`homa_client.oauth.ClientCredentials` against a fake token endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import grpc
import pytest

from homa_client import (
    TOKEN_ENDPOINT_ERROR,
    TOKEN_ENDPOINT_UNAVAILABLE,
    AsyncHomaClient,
    ClientCredentials,
    HomaClient,
    TokenProvider,
    UnauthenticatedError,
    UnavailableError,
)
from tests.rpc.test_client_support import closed_port_target

CLIENT_ID = "svc:reporting"
SECRET = "s3cr3t+canary/7f1e=="  # characters that must be form-encoded in Basic auth
TOKEN = "access-token-canary-0b9d"

Answer = Callable[[dict[str, list[str]]], tuple[int, bytes, str]]


def ok(token: str = TOKEN, expires_in: Any = 3600, token_type: Any = "Bearer") -> Answer:
    def answer(form: dict[str, list[str]]) -> tuple[int, bytes, str]:
        body: dict[str, Any] = {"access_token": token, "token_type": token_type}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return 200, json.dumps(body).encode(), "application/json"

    return answer


class TokenEndpoint:
    """A threaded HTTP token endpoint recording each request (headers and form)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, list[str]]]] = []
        self.answer: Answer = ok()
        self.delay = 0.0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                endpoint.requests.append(({k.lower(): v for k, v in self.headers.items()}, form))
                time.sleep(endpoint.delay)
                status, body, content_type = endpoint.answer(form)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/token"

    def __enter__(self) -> TokenEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def credentials(endpoint: TokenEndpoint, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(endpoint.url, CLIENT_ID, SECRET, **kwargs)


def test_basic_auth_and_form(endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint, scope=["chat:write", "admin:read"], audience="homa")

    assert source.token_sync() == TOKEN
    headers, form = endpoint.requests[0]
    scheme, _, encoded = headers["authorization"].partition(" ")
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert scheme == "Basic"
    assert (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, SECRET)
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["chat:write admin:read"],
        "audience": ["homa"],
    }
    assert headers["content-type"] == "application/x-www-form-urlencoded"


async def test_client_secret_post_sends_the_credentials_in_the_body(endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint, auth_method="client_secret_post", scope="chat:write")

    assert await source.token() == TOKEN
    headers, form = endpoint.requests[0]
    assert "authorization" not in headers
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["chat:write"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }


def test_no_scope_or_audience_sends_only_the_grant(endpoint: TokenEndpoint) -> None:
    credentials(endpoint).token_sync()
    assert endpoint.requests[0][1] == {"grant_type": ["client_credentials"]}


def test_token_is_cached_until_shortly_before_expiry(endpoint: TokenEndpoint) -> None:
    clock = Clock()
    source = credentials(endpoint, clock=clock, refresh_margin_s=30)
    endpoint.answer = ok(expires_in=120)

    assert source.token_sync() == TOKEN
    clock.now += 89
    assert source.token_sync() == TOKEN
    assert len(endpoint.requests) == 1
    endpoint.answer = ok(token="second-token")
    clock.now += 1  # 90 s: inside the 30 s margin
    assert source.token_sync() == "second-token"
    assert len(endpoint.requests) == 2


async def test_async_cache_and_refresh(endpoint: TokenEndpoint) -> None:
    clock = Clock()
    source = credentials(endpoint, clock=clock)
    endpoint.answer = ok(expires_in="600")  # some servers send a string

    assert await source.token() == TOKEN
    assert await source.token() == TOKEN
    assert source.fetches == 1
    clock.now += 600
    endpoint.answer = ok(token="renewed")
    assert await source.token() == "renewed"
    assert source.fetches == 2


def test_short_lifetime_caps_the_margin_at_half(endpoint: TokenEndpoint) -> None:
    clock = Clock()
    source = credentials(endpoint, clock=clock, refresh_margin_s=30)
    endpoint.answer = ok(expires_in=20)
    source.token_sync()
    clock.now += 9
    source.token_sync()
    assert source.fetches == 1
    clock.now += 1
    source.token_sync()
    assert source.fetches == 2


def test_invalidate_drops_only_the_matching_token(endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint)
    source.token_sync()
    source.invalidate("some-other-token")
    source.token_sync()
    assert source.fetches == 1
    source.invalidate(TOKEN)
    source.token_sync()
    assert source.fetches == 2


async def test_concurrent_async_callers_share_one_fetch(endpoint: TokenEndpoint) -> None:
    endpoint.delay = 0.2
    source = credentials(endpoint)
    tokens = await asyncio.gather(*(source.token() for _ in range(20)))
    assert tokens == [TOKEN] * 20
    assert len(endpoint.requests) == 1


def test_concurrent_threads_share_one_fetch(endpoint: TokenEndpoint) -> None:
    endpoint.delay = 0.2
    source = credentials(endpoint)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(source.token_sync())) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [TOKEN] * 10
    assert len(endpoint.requests) == 1


def _status(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    return lambda form: (status, body, content_type)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (
            _status(401, json.dumps({"error": "invalid_client", "error_description": SECRET}).encode()),
            "HTTP 401 (invalid_client)",
        ),
        (_status(500, b"<html>" + SECRET.encode() + b"</html>", "text/html"), "HTTP 500"),
        (_status(200, b"not json " + TOKEN.encode(), "text/plain"), "not a JSON object"),
        (_status(200, b"[1, 2]"), "not a JSON object"),
        (_status(200, json.dumps({"token_type": "Bearer", "expires_in": 60}).encode()), "no access_token"),
        (ok(token_type="mac"), "'mac', not Bearer"),
        (ok(token_type=None), "not Bearer"),
        (ok(expires_in=-5), "invalid expires_in"),
        (ok(expires_in="soon"), "invalid expires_in"),
    ],
)
async def test_endpoint_errors_are_unauthenticated(
    endpoint: TokenEndpoint, answer: Answer, fragment: str
) -> None:
    endpoint.answer = answer
    source = credentials(endpoint)

    with pytest.raises(UnauthenticatedError) as caught:
        source.token_sync()
    _check_error(caught.value, fragment)
    with pytest.raises(UnauthenticatedError) as caught_async:
        await source.token()
    _check_error(caught_async.value, fragment)


def _check_error(error: UnauthenticatedError, fragment: str) -> None:
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == TOKEN_ENDPOINT_ERROR
    assert fragment in error.message
    for text in (str(error), repr(error), error.message):
        assert SECRET not in text
        assert TOKEN not in text


def test_lowercase_bearer_is_accepted(endpoint: TokenEndpoint) -> None:
    endpoint.answer = ok(token_type="bearer", expires_in=None)
    assert credentials(endpoint).token_sync() == TOKEN


async def test_unreachable_endpoint_is_unavailable() -> None:
    source = ClientCredentials(f"http://{closed_port_target()}/token", CLIENT_ID, SECRET, timeout=2)
    with pytest.raises(UnavailableError) as caught:
        source.token_sync()
    assert caught.value.reason == TOKEN_ENDPOINT_UNAVAILABLE
    assert caught.value.retryable
    with pytest.raises(UnavailableError):
        await source.token()
    assert SECRET not in repr(caught.value)


def test_repr_hides_the_secret_and_the_token(endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint, scope="chat:write")
    source.token_sync()
    text = repr(source) + str(source)
    assert CLIENT_ID in text
    assert SECRET not in text
    assert TOKEN not in text
    assert isinstance(source, TokenProvider)


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="auth_method"):
        ClientCredentials("http://x/token", "id", "s", auth_method="private_key_jwt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="required"):
        ClientCredentials("", "id", "s")
    with pytest.raises(ValueError, match="timeout"):
        ClientCredentials("http://x/token", "id", "s", timeout=0)


def test_clients_refuse_api_key_with_token_provider(endpoint: TokenEndpoint) -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        HomaClient("127.0.0.1:1", api_key="homa_sk_x", token_provider=credentials(endpoint))
    with pytest.raises(ValueError, match="mutually exclusive"):
        AsyncHomaClient("127.0.0.1:1", api_key="homa_sk_x", token_provider=credentials(endpoint))
