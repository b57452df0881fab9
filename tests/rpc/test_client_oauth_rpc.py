"""Clients with `token_provider=ClientCredentials(...)` against the in-process gateway in JWT mode.

The fake token endpoint mints HS256 JWTs with the gateway's shared secret, issuer and audience.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from homa_client import (
    AsyncHomaClient,
    ChatRequestBuilder,
    ClientCredentials,
    HomaClient,
    UnauthenticatedError,
    text_of,
)
from homa_server.app import start, stop
from tests.rpc.test_auth_rpc import hs_settings
from tests.unit.auth import AUDIENCE, HMAC_SECRET, ISSUER, hs_signer, make_token
from tests.unit.test_client_oauth import Answer, TokenEndpoint

CLIENT_ID = "reporting-service"
SECRET = "oauth-client-secret-canary-3c1d"


def minting(scope: str = "chat:write", *, bad_first: int = 0) -> Answer:
    """Answers with a fresh HS256 JWT; the first `bad_first` answers carry an invalid token."""
    issued = 0

    def answer(form: dict[str, list[str]]) -> tuple[int, bytes, str]:
        nonlocal issued
        issued += 1
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": CLIENT_ID, "tenant": "acme", "exp": now + 300}
        claims |= {"iat": now, "scope": form.get("scope", [scope])[0]}
        token = make_token({"alg": "HS256", "typ": "JWT"}, claims, hs_signer(HMAC_SECRET))
        if issued <= bad_first:
            token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # bad signature
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 300}
        return 200, json.dumps(body).encode(), "application/json"

    return answer


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as running:
        running.answer = minting()
        yield running


@pytest.fixture
async def target() -> AsyncIterator[str]:
    gateway, built = await start(hs_settings())
    try:
        yield f"127.0.0.1:{built.port}"
    finally:
        await stop(gateway, built, grace=0)


def credentials(endpoint: TokenEndpoint) -> ClientCredentials:
    return ClientCredentials(endpoint.url, CLIENT_ID, SECRET, scope="chat:write", audience=AUDIENCE)


def echo(text: str) -> ChatRequestBuilder:
    return ChatRequestBuilder("mock/echo").user(text)


async def test_async_client_completes_with_client_credentials(target: str, endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint)
    async with AsyncHomaClient(target, timeout=10, token_provider=source) as client:
        response = await client.chat.complete(echo("with a token"))
        assert text_of(response.message) == "echo: with a token"
        result = await client.chat.collect(echo("streamed"))
        assert result.text == "echo: streamed"
        async with client.chat.converse("mock/echo") as conversation:
            turn = await conversation.send("conversing")
        assert "conversing" in turn.text
    assert source.fetches == 1  # one token served every call
    assert endpoint.requests[0][1]["audience"] == [AUDIENCE]


async def test_async_client_without_a_token_is_unauthenticated(target: str) -> None:
    async with AsyncHomaClient(target, timeout=10) as client:
        with pytest.raises(UnauthenticatedError):
            await client.chat.complete(echo("no token"))


async def test_sync_client_completes_with_client_credentials(target: str, endpoint: TokenEndpoint) -> None:
    source = credentials(endpoint)

    def run() -> tuple[str, str]:
        with HomaClient(target, timeout=10, token_provider=source) as client:
            response = client.chat.complete(echo("sync token"))
            return text_of(response.message), client.chat.collect(echo("sync stream")).text

    assert await asyncio.to_thread(run) == ("echo: sync token", "echo: sync stream")
    assert source.fetches == 1

    def anonymous() -> None:
        with HomaClient(target, timeout=10) as client:
            client.chat.complete(echo("no token"))

    with pytest.raises(UnauthenticatedError) as caught:
        await asyncio.to_thread(anonymous)
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


async def test_rejected_token_is_refreshed_once_for_unary_calls(target: str, endpoint: TokenEndpoint) -> None:
    endpoint.answer = minting(bad_first=1)
    source = credentials(endpoint)
    async with AsyncHomaClient(target, timeout=10, token_provider=source) as client:
        response = await client.chat.complete(echo("retried"), request_id="retry-1")
    assert text_of(response.message) == "echo: retried"
    assert source.fetches == 2

    endpoint.answer = minting(bad_first=1)
    sync_source = credentials(endpoint)

    def run() -> str:
        with HomaClient(target, timeout=10, token_provider=sync_source) as client:
            return text_of(client.chat.complete(echo("sync retried")).message)

    assert await asyncio.to_thread(run) == "echo: sync retried"
    assert sync_source.fetches == 2


async def test_rejected_tokens_fail_after_one_retry_and_streams_never_retry(
    target: str, endpoint: TokenEndpoint
) -> None:
    endpoint.answer = minting(bad_first=100)
    source = credentials(endpoint)
    async with AsyncHomaClient(target, timeout=10, token_provider=source) as client:
        with pytest.raises(UnauthenticatedError) as caught:
            await client.chat.complete(echo("never"))
        assert caught.value.reason == "INVALID_CREDENTIALS"
        assert source.fetches == 2
        with pytest.raises(UnauthenticatedError):
            await client.chat.collect(echo("stream"))
        assert source.fetches == 3  # the stream fetched (the cache was emptied) but did not retry
    assert SECRET not in repr(caught.value) + str(caught.value)
