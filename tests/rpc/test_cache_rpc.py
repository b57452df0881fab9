"""The response cache over gRPC: hits and stream replay with the `homa-cache` trailer on every
backend, usage records of hits, tenant isolation between two JWT tenants, and
AdminService.InvalidateCache (by key, model, tenant, all; a tenant caller confined to its tenant)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import select

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import start, stop
from homa_server.store.tables import usage_records
from tests.conftest import RunningServer, make_settings
from tests.unit.auth import AUDIENCE, HMAC_SECRET, ISSUER, hs_signer, make_token

MODEL = "mock/echo"


def request(text: str = "hello cache", **fields: Any) -> chat_pb2.CompleteRequest:
    message = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text=text)])
    return chat_pb2.CompleteRequest(model=MODEL, messages=[message], **fields)


def stream_request(text: str = "hello stream", **fields: Any) -> chat_pb2.StreamCompleteRequest:
    return chat_pb2.StreamCompleteRequest.FromString(request(text, **fields).SerializeToString())


def trailers(call: Any) -> dict[str, str]:
    return {k: v for k, v in call}  # noqa: C416


async def running(**overrides: Any) -> RunningServer:
    gateway, built = await start(make_settings(**{"cache.enabled": True, **overrides}))
    return RunningServer(gateway, built, aio.insecure_channel(f"127.0.0.1:{built.port}"))


async def close(server: RunningServer) -> None:
    await server.channel.close()
    await stop(server.gateway, server.built, 0)


@pytest.fixture(params=["memory", "redis", "memcached", "filesystem"])
async def cached_server(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    server = await running(
        **{
            "cache.backend": request.param,
            "cache.namespace": f"test-{uuid.uuid4().hex[:12]}",
            "cache.timeout_s": 2.0,
        }
    )
    try:
        yield server
    finally:
        await admin_grpc.AdminServiceStub(server.channel).InvalidateCache(
            admin_pb2.InvalidateCacheRequest(all=True)
        )
        await close(server)


async def complete(
    stub: chat_grpc.ChatServiceStub, req: chat_pb2.CompleteRequest, **kw: Any
) -> tuple[Any, dict[str, str]]:
    call = stub.Complete(req, **kw)
    response = await call
    return response, trailers(await call.trailing_metadata())


async def stream(
    stub: chat_grpc.ChatServiceStub, req: chat_pb2.StreamCompleteRequest, **kw: Any
) -> tuple[list[chat_pb2.StreamCompleteResponse], dict[str, str]]:
    call = stub.StreamComplete(req, **kw)
    events = [event async for event in call]
    return events, trailers(await call.trailing_metadata())


async def test_unary_hit_with_trailer_and_cached_route(cached_server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(cached_server.channel)
    first, miss = await complete(stub, request())
    second, hit = await complete(stub, request())
    assert miss["homa-cache"] == "MISS"
    assert hit["homa-cache"] == "HIT"
    assert hit["homa-cache-key"] == miss["homa-cache-key"]
    assert len(hit["homa-cache-key"]) == 64
    assert (first.route.attempt, second.route.attempt) == (1, 0)
    assert (second.route.provider, second.route.model) == ("mock", "echo")
    assert second.message == first.message
    assert second.id == first.id
    assert hit["homa-attempts"] == "0"


async def test_stream_hit_replays_the_same_events(cached_server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(cached_server.channel)
    req = stream_request(provider_options=chat_pb2.ProviderOptions())
    req.provider_options.extra_body.update(
        {"mock": {"text": "a streamed answer in pieces", "chunk_chars": 4}}
    )
    first, miss = await stream(stub, req)
    again, hit = await stream(stub, req)
    assert (miss["homa-cache"], hit["homa-cache"]) == ("MISS", "HIT")
    assert first[0].route.attempt == 1
    assert again[0].route.attempt == 0
    assert again[0].route.model == first[0].route.model
    assert again[1:] == first[1:]
    assert again[-1].HasField("finish")
    assert "".join(e.delta.text for e in again) == "a streamed answer in pieces"


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A server with the (default, memory) cache switched on."""
    started = await running()
    try:
        yield started
    finally:
        await close(started)


async def test_disabled_cache_is_bypassed() -> None:
    off = await running(**{"cache.enabled": False})
    try:
        stub = chat_grpc.ChatServiceStub(off.channel)
        on = request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_ON))
        for _ in range(2):
            response, meta = await complete(stub, on)
            assert "homa-cache" not in meta
            assert response.route.attempt == 1
    finally:
        await close(off)


async def test_bypass_has_no_trailer_and_nondeterministic_is_not_cached(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    off = request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_OFF))
    _, meta = await complete(stub, off)
    assert "homa-cache" not in meta
    hot = request("warm", temperature=0.8)
    for _ in range(2):
        response, meta = await complete(stub, hot)
        assert "homa-cache" not in meta
        assert response.route.attempt == 1


async def test_a_cut_stream_is_not_cached(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    req = stream_request()
    req.model = "mock/die-midway"
    for _ in range(2):
        call = stub.StreamComplete(req)
        with pytest.raises(aio.AioRpcError):
            _ = [event async for event in call]
        assert dict(await call.trailing_metadata()).get("homa-cache") == "MISS"


async def test_hits_are_recorded_as_usage_with_cache_hit(server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(server.channel)
    await complete(stub, request("usage"))
    await complete(stub, request("usage"))
    outbox = server.gateway.outbox
    assert outbox is not None
    await outbox.flush()
    async with server.gateway.db.begin() as connection:
        rows = [dict(r) for r in (await connection.execute(select(usage_records))).mappings()]
    mine = [r for r in rows if r["method"] == "chat.Complete"]
    assert sorted(r["cache_hit"] for r in mine) == [False, True]
    hit = next(r for r in mine if r["cache_hit"])
    assert (hit["input_tokens"], hit["output_tokens"], hit["cost_micros"], hit["status"]) == (
        0,
        0,
        0,
        "completed",
    )


# --- tenants and invalidation ---------------------------------------------------------------------


def bearer(subject: str, tenant: str, scope: str = "chat:write admin:write") -> tuple[tuple[str, str]]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "tenant": tenant,
        "exp": now + 300,
        "iat": now,
        "scope": scope,
    }
    token = make_token({"alg": "HS256", "typ": "JWT"}, claims, hs_signer(HMAC_SECRET))
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def jwt_server() -> AsyncIterator[RunningServer]:
    server = await running(
        **{
            "auth.mode": ["jwt"],
            "auth.jwt.issuer": ISSUER,
            "auth.jwt.audiences": [AUDIENCE],
            "auth.jwt.algorithms": ["HS256"],
            "auth.jwt.shared_secret": HMAC_SECRET.decode(),
        }
    )
    try:
        yield server
    finally:
        await close(server)


ACME, GLOBEX = bearer("alice", "acme"), bearer("gina", "globex")
OPERATOR = bearer("root", "ops", "chat:write admin:write tenants:all")


async def test_two_tenants_get_two_entries(jwt_server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(jwt_server.channel)
    _, a1 = await complete(stub, request("shared prompt"), metadata=ACME)
    _, g1 = await complete(stub, request("shared prompt"), metadata=GLOBEX)
    _, a2 = await complete(stub, request("shared prompt"), metadata=ACME)
    _, g2 = await complete(stub, request("shared prompt"), metadata=GLOBEX)
    assert (a1["homa-cache"], g1["homa-cache"], a2["homa-cache"], g2["homa-cache"]) == (
        "MISS",
        "MISS",
        "HIT",
        "HIT",
    )
    assert a1["homa-cache-key"] != g1["homa-cache-key"]


async def test_invalidation_by_key_model_tenant_and_all(jwt_server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(jwt_server.channel)
    admin = admin_grpc.AdminServiceStub(jwt_server.channel)

    async def state(text: str, who: Any) -> str:
        _, meta = await complete(chat, request(text), metadata=who)
        return meta["homa-cache"]

    _, meta = await complete(chat, request("k"), metadata=ACME)
    removed = await admin.InvalidateCache(
        admin_pb2.InvalidateCacheRequest(cache_key=meta["homa-cache-key"]), metadata=ACME
    )
    assert (removed.removed_count, removed.exact) == (1, True)
    assert await state("k", ACME) == "MISS"

    removed = await admin.InvalidateCache(admin_pb2.InvalidateCacheRequest(model=MODEL), metadata=ACME)
    assert removed.removed_count == 1
    assert await state("k", ACME) == "MISS"

    await complete(chat, request("g"), metadata=GLOBEX)
    with pytest.raises(aio.AioRpcError) as denied:
        await admin.InvalidateCache(admin_pb2.InvalidateCacheRequest(tenant="globex"), metadata=ACME)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # acme's "all" only reaches acme's entries
    assert (
        await admin.InvalidateCache(admin_pb2.InvalidateCacheRequest(all=True), metadata=ACME)
    ).removed_count == 1
    assert await state("g", GLOBEX) == "HIT"

    removed = await admin.InvalidateCache(
        admin_pb2.InvalidateCacheRequest(tenant="globex"), metadata=OPERATOR
    )
    assert removed.removed_count == 1
    assert await state("g", GLOBEX) == "MISS"
    await complete(chat, request("k"), metadata=ACME)
    removed = await admin.InvalidateCache(admin_pb2.InvalidateCacheRequest(all=True), metadata=OPERATOR)
    assert removed.removed_count == 2
    assert await state("k", ACME) == "MISS"


async def test_invalidate_needs_a_target(server: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(server.channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await admin.InvalidateCache(admin_pb2.InvalidateCacheRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
