"""Authentication and authorisation of every RPC, through a real in-process server.

The authorisation matrix walks the service descriptors, so an RPC added to a proto is covered (and
fails closed) without editing this file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiohttp import web
from google.protobuf import descriptor, message_factory
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway, start, stop
from homa_server.auth.policy import UNLISTED_SCOPE, ScopePolicy
from homa_server.auth.principal import Principal
from homa_server.errors import GatewayError
from homa_server.observability.call_state import CallState, current_call
from homa_server.rpc.server import BuiltServer, service_descriptors
from homa_server.settings import Settings
from tests.conftest import make_settings, status_details
from tests.unit.auth import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    hs_signer,
    make_token,
    public_pem,
    rs_signer,
    rsa_key,
)

GARBAGE = "garbage-token-canary-5d1e"
OPAQUE = "opaque-token-canary-91b7c2"
INACTIVE = "opaque-inactive-canary-44aa"
CLIENT_SECRET = "introspection-client-secret-canary"


def _claims(scope: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant": "acme",
        "exp": now + 300,
        "iat": now,
        "scope": scope,
        **extra,
    }


def hs_token(scope: str) -> str:
    return make_token({"alg": "HS256", "typ": "JWT"}, _claims(scope), hs_signer(HMAC_SECRET))


def rs_token(scope: str) -> str:
    return make_token({"alg": "RS256", "kid": "k1"}, _claims(scope), rs_signer(rsa_key("auth-rpc")))


def hs_settings(**extra: Any) -> Settings:
    return make_settings(
        **{
            "auth.mode": "jwt",
            "auth.jwt.issuer": ISSUER,
            "auth.jwt.audiences": [AUDIENCE],
            "auth.jwt.algorithms": ["HS256"],
            "auth.jwt.shared_secret": HMAC_SECRET.decode(),
            **extra,
        }
    )


def rs_settings() -> Settings:
    return make_settings(
        **{
            "auth.mode": ["jwt"],
            "auth.jwt.issuer": ISSUER,
            "auth.jwt.audiences": [AUDIENCE],
            "auth.jwt.algorithms": ["RS256"],
            "auth.jwt.public_keys": {"k1": public_pem(rsa_key("auth-rpc")).decode()},
        }
    )


@dataclass
class Served:
    gateway: Gateway
    built: BuiltServer
    channel: aio.Channel


async def _serve(settings: Settings) -> Served:
    gateway, built = await start(settings)
    return Served(gateway, built, aio.insecure_channel(f"127.0.0.1:{built.port}"))


async def _close(served: Served) -> None:
    await served.channel.close()
    await stop(served.gateway, served.built, 0)


@dataclass(frozen=True)
class Rpc:
    path: str
    method: descriptor.MethodDescriptor

    def __str__(self) -> str:
        return self.path


def all_rpcs() -> list[Rpc]:
    return [
        Rpc(f"/{service.full_name}/{method.name}", method)
        for service in service_descriptors()
        for method in service.methods
    ]


async def _invoke(channel: aio.Channel, rpc: Rpc, token: str | None) -> aio.AioRpcError | None:
    """Call `rpc` with an empty request (or an empty request stream); the error, or None on success."""
    request_cls = message_factory.GetMessageClass(rpc.method.input_type)
    ser = request_cls.SerializeToString
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    method = rpc.method

    async def empty() -> AsyncIterator[Any]:
        return
        yield  # pragma: no cover

    try:
        if method.client_streaming and method.server_streaming:
            call: Any = channel.stream_stream(rpc.path, request_serializer=ser)(
                empty(), metadata=metadata, timeout=5
            )
            async for _ in call:
                pass
        elif method.client_streaming:
            await channel.stream_unary(rpc.path, request_serializer=ser)(
                empty(), metadata=metadata, timeout=5
            )
        elif method.server_streaming:
            call = channel.unary_stream(rpc.path, request_serializer=ser)(
                request_cls(), metadata=metadata, timeout=5
            )
            async for _ in call:
                pass
        else:
            await channel.unary_unary(rpc.path, request_serializer=ser)(
                request_cls(), metadata=metadata, timeout=5
            )
    except aio.AioRpcError as error:
        return error
    return None


def _reason(error: aio.AioRpcError) -> str:
    return str(status_details(error)["ErrorInfo"].reason)


def test_every_rpc_has_a_scope_in_the_default_table() -> None:
    policy = ScopePolicy()
    rpcs = all_rpcs()
    assert len(rpcs) == 53
    assert [r.path for r in rpcs if policy.required_scope(r.path) == UNLISTED_SCOPE] == []
    assert policy.required_scope("/homa.chat.v1.ChatService/NoSuchMethod") == UNLISTED_SCOPE


@pytest.mark.parametrize("kind", ["HS256", "RS256"])
async def test_authorisation_matrix(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    minted = hs_token if kind == "HS256" else rs_token
    policy = ScopePolicy()
    served = await _serve(hs_settings() if kind == "HS256" else rs_settings())
    problems: list[str] = []
    tokens: list[str] = [GARBAGE]
    try:
        for rpc in all_rpcs():
            scope = policy.required_scope(rpc.path)
            wrong = "nothing:granted" if scope != "nothing:granted" else "other:scope"
            wrong_token, right_token = minted(wrong), minted(f"unrelated:x {scope}")
            tokens += [wrong_token, right_token]
            expected = {
                None: (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_REQUIRED"),
                GARBAGE: (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS"),
                wrong_token: (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
            }
            for token, (code, reason) in expected.items():
                error = await _invoke(served.channel, rpc, token)
                got = (error.code(), _reason(error)) if error is not None else ("OK", "")
                if got != (code, reason):
                    problems.append(f"{rpc} token={'none' if token is None else '…'}: {got}")
                elif error.details() not in {
                    "credentials required",
                    "invalid credentials",
                    "permission denied",
                }:
                    problems.append(f"{rpc}: unexpected message {error.details()!r}")
            error = await _invoke(served.channel, rpc, right_token)
            if error is not None and error.code() in {
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            }:
                problems.append(f"{rpc} right scope: {error.code()} {error.details()}")
    finally:
        await _close(served)
    assert problems == []
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert all(token not in text for token in tokens)
    assert HMAC_SECRET.decode() not in text


async def test_scheme_is_case_insensitive_and_malformed_headers_are_invalid() -> None:
    served = await _serve(hs_settings())
    stub = chat_grpc.ChatServiceStub(served.channel)
    token = hs_token("chat:write")
    request = chat_pb2.CountTokensRequest(model="mock/echo", messages=_chat("mock/echo").messages)
    try:
        for value in (f"bearer {token}", f"BEARER {token}", f"Bearer   {token}"):
            await stub.CountTokens(request, metadata=(("authorization", value),))
        for value in (token, f"Basic {token}", "Bearer", f"Bearer {token} extra", f"Token {token}"):
            with pytest.raises(aio.AioRpcError) as info:
                await stub.CountTokens(request, metadata=(("authorization", value),))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _reason(info.value) == "INVALID_CREDENTIALS"
    finally:
        await _close(served)


async def test_health_and_reflection_need_no_credentials() -> None:
    served = await _serve(hs_settings())
    try:
        health = health_pb2_grpc.HealthStub(served.channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(served.channel)
        call = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for r in call for s in r.list_services_response.service]
        assert "homa.chat.v1.ChatService" in names
    finally:
        await _close(served)


async def test_principal_is_published_and_completion_succeeds() -> None:
    served = await _serve(rs_settings())
    try:
        stub = chat_grpc.ChatServiceStub(served.channel)
        request = chat_pb2.CompleteRequest(model="mock/echo")
        request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello")
        answer = await stub.Complete(
            request, metadata=(("authorization", f"Bearer {rs_token('chat:write')}"),)
        )
        assert answer.route.model
        stream = stub.StreamComplete(
            chat_pb2.StreamCompleteRequest(model="mock/echo", messages=request.messages),
            metadata=(("authorization", f"Bearer {rs_token('chat:read')}"),),
        )
        with pytest.raises(aio.AioRpcError) as info:
            async for _ in stream:
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await _close(served)


async def test_mode_none_publishes_the_anonymous_principal() -> None:
    served = await _serve(make_settings())
    try:
        assert served.gateway.authenticator is not None
        anonymous = served.gateway.authenticator.anonymous
        assert anonymous is not None
        assert (anonymous.method, anonymous.subject) == ("none", "anonymous")
        assert ScopePolicy().all_scopes <= anonymous.scopes
        stub = chat_grpc.ChatServiceStub(served.channel)
        # Any credential is ignored in pure mode none.
        request = chat_pb2.CountTokensRequest(model="mock/echo", messages=_chat("mock/echo").messages)
        await stub.CountTokens(request, metadata=(("authorization", "Bearer x"),))
    finally:
        await _close(served)


def _chat(model: str) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model=model)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    return request


@pytest.fixture
def restricted() -> Iterator[None]:
    principal = Principal(
        subject="u",
        tenant="t",
        scopes=frozenset({"chat:write"}),
        method="jwt",
        allowed_models=frozenset({"mock/echo"}),
    )
    token = current_call.set(CallState(request_id="r", method="m", principal=principal))
    yield
    current_call.reset(token)


async def test_allowed_models_are_enforced_by_the_dispatcher(restricted: None) -> None:
    gateway = Gateway.from_settings(make_settings())
    try:
        answer = await gateway.dispatcher.complete(_chat("mock/echo"), None)
        assert answer.route.model
        with pytest.raises(GatewayError) as info:
            await gateway.dispatcher.complete(_chat("mock/tool"), None)
        assert info.value.code.name == "PERMISSION_DENIED"
        assert info.value.message == "permission denied"
        with pytest.raises(GatewayError):
            stream = gateway.dispatcher.stream(_chat("mock/tool"), None)
            async for _ in stream:
                pass
    finally:
        await gateway.aclose()


class FakeIntrospection:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({k: str(v) for k, v in form.items()})
        if form.get("token") == OPAQUE:
            body: dict[str, Any] = {
                "active": True,
                "sub": "svc-1",
                "tenant": "acme",
                "scope": "chat:write admin:read",
                "exp": int(time.time()) + 300,
            }
        else:
            body = {"active": False}
        return web.Response(text=json.dumps(body), content_type="application/json")


@pytest.fixture
async def introspection() -> AsyncIterator[tuple[FakeIntrospection, str]]:
    fake = FakeIntrospection()
    app = web.Application()
    app.router.add_post("/introspect", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}/introspect"
    finally:
        await runner.cleanup()


async def test_oauth2_opaque_tokens_are_introspected(
    introspection: tuple[FakeIntrospection, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, url = introspection
    served = await _serve(
        make_settings(
            **{
                "auth.mode": "oauth2",
                "auth.oauth2.introspection_url": url,
                "auth.oauth2.client_id": "homa",
                "auth.oauth2.client_secret": CLIENT_SECRET,
            }
        )
    )
    try:
        stub = chat_grpc.ChatServiceStub(served.channel)
        good = (("authorization", f"Bearer {OPAQUE}"),)
        answer = await stub.Complete(_chat("mock/echo"), metadata=good)
        assert answer.route.model
        await stub.Complete(_chat("mock/echo"), metadata=good)
        assert len(fake.requests) == 1  # cached
        with pytest.raises(aio.AioRpcError) as info:
            await stub.GetConversation(chat_pb2.GetConversationRequest(), metadata=good)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for bad in (INACTIVE, "a.b.c"):
            with pytest.raises(aio.AioRpcError) as info:
                await stub.Complete(_chat("mock/echo"), metadata=(("authorization", f"Bearer {bad}"),))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _reason(info.value) == "INVALID_CREDENTIALS"
    finally:
        await _close(served)
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    for secret in (OPAQUE, INACTIVE, CLIENT_SECRET):
        assert secret not in text


async def test_oauth2_outage_is_unavailable() -> None:
    served = await _serve(
        make_settings(
            **{
                "auth.mode": "oauth2",
                "auth.oauth2.introspection_url": "http://127.0.0.1:9/introspect",
                "auth.oauth2.client_id": "homa",
                "auth.oauth2.client_secret": CLIENT_SECRET,
                "auth.oauth2.timeout_s": 1.0,
            }
        )
    )
    try:
        stub = chat_grpc.ChatServiceStub(served.channel)
        with pytest.raises(aio.AioRpcError) as info:
            await stub.Complete(_chat("mock/echo"), metadata=(("authorization", f"Bearer {OPAQUE}"),))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _reason(info.value) == "AUTH_UNAVAILABLE"
    finally:
        await _close(served)
