"""API keys across replicas sharing one database (SQLite and PostgreSQL), and the repository itself."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import grpc
import pytest
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import start, stop
from homa_server.auth.api_keys import generate_secret, hash_secret, secret_prefix
from homa_server.errors import GatewayError
from homa_server.store.api_keys import ApiKeyRepository, StoredKey
from homa_server.store.database import Database, now_us
from tests.conftest import make_settings

TTL_S = 0.5


def _chat() -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="mock/echo")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    return request


async def _accepted(stub: chat_grpc.ChatServiceStub, secret: str) -> bool:
    try:
        await stub.Complete(_chat(), metadata=(("authorization", f"Bearer {secret}"),))
    except aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.UNAUTHENTICATED:
            raise
        return False
    return True


async def test_revocation_reaches_every_replica_within_the_cache_ttl(db_url: str) -> None:
    overrides = {"storage.url": db_url, "auth.mode": ["none", "api_key"], "auth.api_key.cache_ttl_s": TTL_S}
    a_gateway, a_built = await start(make_settings(**overrides))
    try:
        b_gateway, b_built = await start(make_settings(**overrides))
        try:
            async with (
                aio.insecure_channel(f"127.0.0.1:{a_built.port}") as a_channel,
                aio.insecure_channel(f"127.0.0.1:{b_built.port}") as b_channel,
            ):
                admin_a = admin_grpc.AdminServiceStub(a_channel)
                chat_a, chat_b = chat_grpc.ChatServiceStub(a_channel), chat_grpc.ChatServiceStub(b_channel)
                created = await admin_a.CreateApiKey(
                    admin_pb2.CreateApiKeyRequest(api_key=admin_pb2.ApiKey(name="r", scopes=["chat:write"]))
                )
                assert await _accepted(chat_a, created.secret)
                assert await _accepted(chat_b, created.secret)  # B now holds it in its cache
                await admin_a.RevokeApiKey(
                    admin_pb2.RevokeApiKeyRequest(api_key_id=created.api_key.api_key_id)
                )
                revoked_at = time.monotonic()
                assert not await _accepted(chat_a, created.secret)  # at once on the revoking replica
                while await _accepted(chat_b, created.secret):
                    assert time.monotonic() - revoked_at < TTL_S + 1.0, "replica B still accepts the key"
                    await asyncio.sleep(0.05)
                assert time.monotonic() - revoked_at < TTL_S + 1.0
        finally:
            await stop(b_gateway, b_built, 0)
    finally:
        await stop(a_gateway, a_built, 0)


def _key(tenant: str = "acme", **fields: object) -> StoredKey:
    secret = generate_secret()
    now = now_us()
    return StoredKey(
        api_key_id=f"key_{secret[-10:]}",
        tenant=tenant,
        secret_hash=hash_secret(secret),
        secret_prefix=secret_prefix(secret),
        create_time_us=now,
        update_time_us=now,
        **fields,  # type: ignore[arg-type]
    )


async def test_repository_round_trip(database: Database) -> None:
    repo = ApiKeyRepository(database)
    key = await repo.create(
        _key(name="ci", scopes=["chat:write"], rate_limits={"tokens_per_minute": 10}, labels={"team": "a"})
    )
    assert await repo.get(key.api_key_id, "acme") == key
    assert await repo.get(key.api_key_id, None) == key
    assert await repo.get(key.api_key_id, "globex") is None
    assert await repo.find_by_hash(key.secret_hash) == key
    assert await repo.find_by_hash("0" * 64) is None
    updated = await repo.update(key.api_key_id, "acme", {"name": "cd", "labels": {"team": "b"}})
    assert updated is not None
    assert (updated.name, updated.labels) == ("cd", {"team": "b"})
    assert await repo.get(key.api_key_id, "acme") == updated
    assert await repo.update(key.api_key_id, "globex", {"name": "x"}) is None
    with pytest.raises(ValueError, match="not updatable"):
        await repo.update(key.api_key_id, "acme", {"tenant": "globex"})
    assert await repo.revoke(key.api_key_id, "globex") is None
    revoked = await repo.revoke(key.api_key_id, "acme", "leak")
    assert revoked is not None
    assert revoked.revoked
    assert await repo.revoke(key.api_key_id, "acme", "again") == revoked
    await repo.touch(key.api_key_id, 5)
    await repo.touch(key.api_key_id, 3)  # never backwards
    stored = await repo.get(key.api_key_id, "acme")
    assert stored is not None
    assert stored.last_use_time_us == 5


async def test_repository_paging_and_filters(database: Database) -> None:
    repo = ApiKeyRepository(database)
    base = now_us()
    keys = []
    for i in range(7):
        key = _key("acme" if i < 5 else "globex", name=f"n{i}", labels={"env": "prod" if i % 2 else "dev"})
        keys.append(await repo.create(replace(key, create_time_us=base + i // 2)))  # ties on time too
    expected = sorted(
        (k for k in keys if k.tenant == "acme"), key=lambda k: (k.create_time_us, k.api_key_id), reverse=True
    )
    seen: list[str] = []
    token = ""
    while True:
        page, token = await repo.list_keys("acme", page_size=2, page_token=token)
        seen += [k.api_key_id for k in page]
        if not token:
            break
    assert seen == [k.api_key_id for k in expected]
    everyone, _ = await repo.list_keys(None, page_size=100)
    assert len(everyone) == 7
    prod, _ = await repo.list_keys(
        "acme", page_size=100, filter_text='labels.env = "prod" AND state = ACTIVE'
    )
    assert {k.name for k in prod} == {"n1", "n3"}
    await repo.revoke(keys[1].api_key_id, "acme")
    revoked, _ = await repo.list_keys(None, page_size=100, filter_text="state = REVOKED")
    assert [k.api_key_id for k in revoked] == [keys[1].api_key_id]
    _, first_token = await repo.list_keys("acme", page_size=1)
    with pytest.raises(GatewayError):  # a token is bound to its tenant and filter
        await repo.list_keys("acme", page_size=1, page_token=first_token, filter_text='name = "n1"')
