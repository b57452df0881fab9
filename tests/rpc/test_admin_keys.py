"""API key administration and authentication through a real in-process server.

The server runs with `auth.mode: [none, api_key]`: calls without a credential are the anonymous
operator (every scope, `tenants:all`), calls with a key are that key's principal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from grpc import aio
from sqlalchemy import func, select

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_client import AsyncHomaClient, InvalidArgumentError, NotFoundError
from homa_client.admin_keys import new_api_key
from homa_server.app import start, stop
from homa_server.auth.api_keys import hash_secret
from homa_server.errors import GatewayError, Reason
from homa_server.store.database import now_us
from homa_server.store.records import OUTCOME_DENIED, OUTCOME_SUCCESS
from homa_server.store.tables import api_keys, audit_events
from tests.conftest import RunningServer, make_settings, status_details


@pytest.fixture
async def keyed() -> AsyncIterator[RunningServer]:
    gateway, built = await start(make_settings(**{"auth.mode": ["none", "api_key"]}))
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _auth(secret: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {secret}"),)


def _chat(model: str = "mock/echo") -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model=model)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    return request


async def _create(
    server: RunningServer, secret: str | None = None, **fields: Any
) -> admin_pb2.CreateApiKeyResponse:
    fields.setdefault("name", "test")
    fields.setdefault("scopes", ["chat:write"])
    stub = admin_grpc.AdminServiceStub(server.channel)
    request = admin_pb2.CreateApiKeyRequest(api_key=admin_pb2.ApiKey(**fields))
    return await stub.CreateApiKey(request, metadata=_auth(secret) if secret else None)


async def _fails(call: Any, code: grpc.StatusCode, reason: str) -> dict[str, Any]:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    assert info.value.code() is code, info.value.details()
    details = status_details(info.value)
    assert details["ErrorInfo"].reason == reason
    return details


async def _audit_rows(server: RunningServer) -> list[Any]:
    assert server.gateway.outbox is not None
    await server.gateway.outbox.flush()
    async with server.gateway.db.begin() as conn:
        return list((await conn.execute(select(audit_events).order_by(audit_events.c.sequence))).all())


async def test_create_shows_secret_once_stores_only_hash_and_authenticates(keyed: RunningServer) -> None:
    created = await _create(keyed, tenant="acme", allowed_models=["mock/*"], labels={"team": "a"})
    secret, key = created.secret, created.api_key
    assert secret.startswith("homa_sk_")
    assert len(secret) == 51
    assert key.secret_prefix == secret[:12]
    assert key.state == admin_pb2.API_KEY_STATE_ACTIVE
    assert key.tenant == "acme"
    async with keyed.gateway.db.begin() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.api_key_id == key.api_key_id))).one()
    assert row.secret_hash == hash_secret(secret)
    assert secret not in repr(tuple(row))
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    fetched = (await admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=key.api_key_id))).api_key
    assert secret not in fetched.SerializeToString().decode(errors="replace")
    assert fetched.secret_prefix == key.secret_prefix
    chat = chat_grpc.ChatServiceStub(keyed.channel)
    answer = await chat.Complete(_chat(), metadata=_auth(secret))
    assert answer.route.model


@pytest.mark.parametrize(
    "token",
    [
        "homa_sk_' OR '1'='1",
        "homa_sk_" + "A" * 43,
        "homa_sk_" + "a" * 7000,  # 16 KB never gets this far: gRPC's metadata limit refuses it
    ],
)
async def test_wrong_keys_are_unauthenticated(keyed: RunningServer, token: str) -> None:
    chat = chat_grpc.ChatServiceStub(keyed.channel)
    details = await _fails(
        chat.Complete(_chat(), metadata=_auth(token)), grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS"
    )
    assert token not in str(details)


async def test_revoked_and_expired_keys_are_unauthenticated(keyed: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    chat = chat_grpc.ChatServiceStub(keyed.channel)
    created = await _create(keyed)
    await chat.Complete(_chat(), metadata=_auth(created.secret))
    revoke = admin_pb2.RevokeApiKeyRequest(api_key_id=created.api_key.api_key_id, reason="leaked")
    first = (await admin.RevokeApiKey(revoke)).api_key
    assert first.state == admin_pb2.API_KEY_STATE_REVOKED
    second = (await admin.RevokeApiKey(revoke)).api_key  # idempotent
    assert second.revoke_time == first.revoke_time
    await _fails(
        chat.Complete(_chat(), metadata=_auth(created.secret)),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    soon = await _create(keyed, expire_time=timestamp_pb2.Timestamp(seconds=now_us() // 1_000_000 + 60))
    async with keyed.gateway.db.begin() as conn:
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.api_key_id == soon.api_key.api_key_id)
            .values(expire_time_us=now_us() - 1)
        )
    await _fails(
        chat.Complete(_chat(), metadata=_auth(soon.secret)),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(filter="state = EXPIRED"))
    assert [k.api_key_id for k in listed.api_keys] == [soon.api_key.api_key_id]


async def test_hostile_keys_never_query_the_database(keyed: RunningServer) -> None:
    verifier = keyed.gateway.authenticator.api_keys  # type: ignore[union-attr]
    assert verifier is not None
    store = verifier._store
    calls: list[str] = []
    original = store.find_by_hash

    async def counting(secret_hash: str) -> Any:
        calls.append(secret_hash)
        return await original(secret_hash)

    store.find_by_hash = counting  # type: ignore[method-assign]
    chat = chat_grpc.ChatServiceStub(keyed.channel)
    for token in ("homa_sk_' OR '1'='1", "homa_sk_%27%20OR%201=1--" + "a" * 20, "homa_sk_" + "b" * 7000):
        await _fails(
            chat.Complete(_chat(), metadata=_auth(token)),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    assert calls == []
    authenticator = keyed.gateway.authenticator
    assert authenticator is not None
    for token in ("homa_sk_" + "a" * 20 + "\x00" + "a" * 22, "homa_sk_" + "d" * 16384, "homa_sk_' OR 1=1 --"):
        with pytest.raises(GatewayError) as info:
            await authenticator.authenticate(f"Bearer {token}", "chat:write")
        assert info.value.reason == Reason.INVALID_CREDENTIALS
    assert calls == []
    unknown = "homa_sk_" + "c" * 43
    for _ in range(3):
        await _fails(
            chat.Complete(_chat(), metadata=_auth(unknown)),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    assert calls == [hash_secret(unknown)]  # looked up once by hash, then negatively cached


async def test_scopes_and_allowed_models_are_enforced(keyed: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(keyed.channel)
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    reader = await _create(keyed, scopes=["chat:read"])
    await _fails(
        chat.Complete(_chat(), metadata=_auth(reader.secret)),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    await _fails(
        admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=_auth(reader.secret)),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    globbed = await _create(keyed, allowed_models=["mock/e*"])
    await chat.Complete(_chat("mock/echo"), metadata=_auth(globbed.secret))
    await _fails(
        chat.Complete(_chat("mock/tool"), metadata=_auth(globbed.secret)),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )


async def test_list_paging_filter_and_update_mask(keyed: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    ids = [
        (await _create(keyed, name=f"k{i}", labels={"team": "a" if i % 2 else "b"})).api_key.api_key_id
        for i in range(5)
    ]
    seen: list[str] = []
    request = admin_pb2.ListApiKeysRequest(page_size=2)
    pages = 0
    while True:
        page = await admin.ListApiKeys(request)
        pages += 1
        seen += [k.api_key_id for k in page.api_keys]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first
    team_a = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(filter='labels.team = "a" AND name = "k*"'))
    assert [k.api_key_id for k in team_a.api_keys] == [ids[3], ids[1]]
    await _fails(
        admin.ListApiKeys(admin_pb2.ListApiKeysRequest(filter="secret_hash = 1")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    await _fails(
        admin.ListApiKeys(admin_pb2.ListApiKeysRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    update = admin_pb2.UpdateApiKeyRequest(
        api_key=admin_pb2.ApiKey(
            api_key_id=ids[0],
            name="renamed",
            owner="ignored",
            rate_limits=admin_pb2.RateLimits(tokens_per_minute=1000),
            labels={"env": "prod"},
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["name", "rate_limits.tokens_per_minute", "labels.env"]),
    )
    updated = (await admin.UpdateApiKey(update)).api_key
    assert updated.name == "renamed"
    assert updated.owner == ""
    assert updated.rate_limits.tokens_per_minute == 1000
    assert not updated.rate_limits.HasField("requests_per_minute")
    assert dict(updated.labels) == {"team": "b", "env": "prod"}
    assert updated.update_time.ToMicroseconds() >= updated.create_time.ToMicroseconds()
    for paths in (["tenant"], ["secret_prefix"], ["bogus"]):
        update.update_mask.paths[:] = paths
        details = await _fails(
            admin.UpdateApiKey(update), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
        )
        assert details["BadRequest"].field_violations[0].field == "update_mask"
    update.update_mask.paths[:] = ["scopes"]
    update.api_key.scopes[:] = ["nope:nope"]
    details = await _fails(admin.UpdateApiKey(update), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert details["BadRequest"].field_violations[0].field == "api_key.scopes[0]"


async def test_create_validation(keyed: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    past = timestamp_pb2.Timestamp(seconds=1)
    details = await _fails(
        _create(keyed, name="", scopes=["chat"], allowed_models=["a b"], expire_time=past),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert fields == {"api_key.name", "api_key.scopes[0]", "api_key.allowed_models[0]", "api_key.expire_time"}
    await _fails(
        _create(keyed, budgets=admin_pb2.Budgets(monthly_cost_micros=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    for call in (
        admin.GetApiKey(admin_pb2.GetApiKeyRequest()),
        admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest()),
        admin.ListApiKeys(admin_pb2.ListApiKeysRequest(page_size=-1)),
    ):
        await _fails(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    await _fails(
        admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id="key_missing")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_tenant_isolation_and_privilege_escalation(keyed: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    acme_admin = await _create(keyed, tenant="acme", scopes=["admin:read", "admin:write", "chat:write"])
    other = await _create(keyed, tenant="globex")
    mine = await _create(keyed, acme_admin.secret, scopes=["chat:write"])
    assert mine.api_key.tenant == "acme"
    auth = _auth(acme_admin.secret)
    other_id = other.api_key.api_key_id
    for call in (
        admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=other_id), metadata=auth),
        admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(api_key_id=other_id), metadata=auth),
        admin.UpdateApiKey(
            admin_pb2.UpdateApiKeyRequest(
                api_key=admin_pb2.ApiKey(api_key_id=other_id, name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=auth,
        ),
    ):
        await _fails(call, grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND")
    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=auth)
    assert {k.tenant for k in listed.api_keys} == {"acme"}
    assert other_id not in {k.api_key_id for k in listed.api_keys}
    filtered = await admin.ListApiKeys(
        admin_pb2.ListApiKeysRequest(filter='tenant = "globex"'), metadata=auth
    )
    assert list(filtered.api_keys) == []
    await _fails(
        _create(keyed, acme_admin.secret, tenant="globex"),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    for scopes in (["tenants:all"], ["images:write"], ["chat:write", "admin:write", "batch:write"]):
        await _fails(
            _create(keyed, acme_admin.secret, scopes=scopes),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
    escalate = admin_pb2.UpdateApiKeyRequest(
        api_key=admin_pb2.ApiKey(api_key_id=mine.api_key.api_key_id, scopes=["chat:write", "tenants:all"]),
        update_mask=field_mask_pb2.FieldMask(paths=["scopes"]),
    )
    await _fails(
        admin.UpdateApiKey(escalate, metadata=auth), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"
    )
    rows = await _audit_rows(keyed)
    denied = [r for r in rows if r.outcome == OUTCOME_DENIED and r.action.startswith("api_key.")]
    assert {r.action for r in denied} == {"api_key.create", "api_key.update", "api_key.revoke"}
    assert all(r.actor == acme_admin.api_key.api_key_id for r in denied)


async def test_every_admin_action_is_audited_without_the_secret(keyed: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(keyed.channel)
    created = await _create(keyed, tenant="acme")
    key_id = created.api_key.api_key_id
    await admin.UpdateApiKey(
        admin_pb2.UpdateApiKeyRequest(
            api_key=admin_pb2.ApiKey(api_key_id=key_id, owner="ops"),
            update_mask=field_mask_pb2.FieldMask(paths=["owner"]),
        ),
        metadata=(("x-request-id", "req-update-1"),),
    )
    await admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(api_key_id=key_id, reason="rotation"))
    rows = await _audit_rows(keyed)
    ours = [r for r in rows if r.resource == f"apiKeys/{key_id}"]
    assert [(r.action, r.outcome) for r in ours] == [
        ("api_key.create", OUTCOME_SUCCESS),
        ("api_key.update", OUTCOME_SUCCESS),
        ("api_key.revoke", OUTCOME_SUCCESS),
    ]
    assert all(r.actor == "anonymous" and r.tenant == "acme" for r in ours)
    assert ours[1].request_id == "req-update-1"
    assert ours[2].details == {"reason": "rotation"}
    dump = repr([tuple(r) for r in rows])
    assert created.secret not in dump
    assert hash_secret(created.secret) not in dump
    async with keyed.gateway.db.begin() as conn:
        assert (await conn.execute(select(func.count()).select_from(audit_events))).scalar_one() == len(rows)


async def test_async_client_key_methods(keyed: RunningServer) -> None:
    async with AsyncHomaClient(keyed.target, timeout=10) as client:
        created = await client.admin.create_api_key(
            new_api_key(
                "client",
                scopes=["chat:write"],
                tenant="acme",
                expire_time=datetime.now(UTC) + timedelta(days=1),
                labels={"team": "x"},
            )
        )
        key_id = created.api_key.api_key_id
        for i in range(3):
            await client.admin.create_api_key(new_api_key(f"more{i}", scopes=["chat:write"], tenant="acme"))
        listed = await client.admin.list_api_keys('tenant = "acme"', page_size=2)  # follows every page
        assert len(listed) == 4
        assert listed[-1].api_key_id == key_id
        renamed = await client.admin.update_api_key(
            admin_pb2.ApiKey(api_key_id=key_id, name="renamed"), ["name"]
        )
        assert renamed.name == "renamed"
        assert (await client.admin.get_api_key(key_id)).name == "renamed"
        revoked = await client.admin.revoke_api_key(key_id, "done")
        assert revoked.state == admin_pb2.API_KEY_STATE_REVOKED
        with pytest.raises(NotFoundError) as info:
            await client.admin.get_api_key("key_missing")
        assert info.value.reason == "RESOURCE_NOT_FOUND"
        with pytest.raises(InvalidArgumentError):
            await client.admin.create_api_key(new_api_key("x", scopes=["root"]))
    with pytest.raises(ValueError, match="time-zone aware"):
        new_api_key("x", scopes=[], expire_time=datetime(2030, 1, 1))
