"""Access auditing of every RPC and the audit RPCs (ListAuditEvents, VerifyAuditLog), end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select, update

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway
from homa_server.store.tables import audit_events
from tests.conftest import RunningServer, status_details
from tests.jwt_gateway import jwt_gateway, token

CANARY = "garbage-token-canary-77f0"
API_KEY = "homa_sk_abcd" + "Z" * 40


def _chat(model: str = "mock/echo") -> chat_pb2.CompleteRequest:
    message = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text="hello")])
    return chat_pb2.CompleteRequest(model=model, messages=[message])


def _token(scope: str, tenant: str = "acme", sub: str = "user-1") -> str:
    return token(scope, tenant, sub)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _events(gateway: Gateway) -> list[dict[str, Any]]:
    assert gateway.outbox is not None
    await gateway.outbox.flush()
    async with gateway.db.engine.connect() as connection:
        rows = await connection.execute(select(audit_events).order_by(audit_events.c.sequence))
        return [dict(row._mapping) for row in rows]


@pytest.fixture
async def jwt_server() -> AsyncIterator[RunningServer]:
    async with jwt_gateway() as running:
        yield running


async def test_every_rpc_is_audited_with_its_outcome(server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(server.channel)
    call = chat.Complete(_chat(), metadata=(("x-request-id", "req-ok-1"),))
    await call
    with pytest.raises(aio.AioRpcError) as failed:
        await chat.Complete(_chat("mock/unavailable"))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    await admin_grpc.AdminServiceStub(server.channel).ListModels(admin_pb2.ListModelsRequest())
    await health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest())
    events = await _events(server.gateway)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("chat.ChatService/Complete", 1),
        ("chat.ChatService/Complete", 3),
        ("admin.AdminService/ListModels", 1),
    ]
    ok, bad, _ = events
    assert (ok["actor"], ok["auth_method"], ok["request_id"]) == ("anonymous", "none", "req-ok-1")
    assert ok["client_address"] == "127.0.0.0/24"
    assert ok["details"] == {}
    assert ok["reason"] == ""
    assert bad["reason"] == "UPSTREAM_UNAVAILABLE"


async def test_failed_authentication_never_records_the_token(jwt_server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(jwt_server.channel)
    for metadata in (_bearer(CANARY), (), _bearer(API_KEY)):
        with pytest.raises(aio.AioRpcError) as denied:
            await chat.Complete(_chat(), metadata=metadata)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as forbidden:
        await chat.Complete(_chat(), metadata=_bearer(_token("admin:read")))
    assert forbidden.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await chat.Complete(_chat(), metadata=_bearer(_token("chat:write")))
    events = await _events(jwt_server.gateway)
    summary = [(e["action"], e["outcome"], e["actor"], e["reason"]) for e in events]
    assert summary == [
        ("auth.failed", 2, "", "INVALID_CREDENTIALS"),
        ("auth.failed", 2, "", "CREDENTIALS_REQUIRED"),
        ("auth.failed", 2, "", "INVALID_CREDENTIALS"),
        # Authenticated but without the scope: denied, and the actor is known.
        ("chat.ChatService/Complete", 2, "user-1", "PERMISSION_DENIED"),
        ("chat.ChatService/Complete", 1, "user-1", ""),
    ]
    assert events[2]["details"] == {"rpc": "chat.ChatService/Complete", "principal_hint": "homa_sk_abcd"}
    assert events[0]["details"] == {"rpc": "chat.ChatService/Complete"}
    assert (events[4]["tenant"], events[4]["auth_method"]) == ("acme", "jwt")
    stored = repr(events)
    assert CANARY not in stored
    assert API_KEY not in stored
    assert "ZZZZ" not in stored


async def test_list_audit_events_is_tenant_scoped(jwt_server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(jwt_server.channel)
    admin = admin_grpc.AdminServiceStub(jwt_server.channel)
    await chat.Complete(_chat(), metadata=_bearer(_token("chat:write", "acme")))
    await chat.Complete(_chat(), metadata=_bearer(_token("chat:write", "globex", "user-2")))
    with pytest.raises(aio.AioRpcError):
        await chat.Complete(_chat(), metadata=_bearer(CANARY))
    await _events(jwt_server.gateway)
    page = await admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(), metadata=_bearer(_token("admin:read", "globex", "ops"))
    )
    assert [(e.actor, e.tenant) for e in page.audit_events] == [("user-2", "globex")]
    cross = await admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(order_by="sequence"),
        metadata=_bearer(_token("admin:read tenants:all", "ops", "root")),
    )
    assert [e.actor for e in cross.audit_events][:3] == ["user-1", "user-2", ""]


async def test_list_paging_order_filter_and_errors(server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(server.channel)
    admin = admin_grpc.AdminServiceStub(server.channel)
    for i in range(7):
        await chat.Complete(_chat(), metadata=(("x-request-id", f"page-{i}"),))
    await _events(server.gateway)
    seen: list[int] = []
    request = admin_pb2.ListAuditEventsRequest(page_size=3, order_by="sequence", filter='action = "chat.*"')
    while True:
        page = await admin.ListAuditEvents(request)
        seen += [e.sequence for e in page.audit_events]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    newest = await admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=2))
    assert newest.audit_events[0].sequence > newest.audit_events[1].sequence
    one = await admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(filter='request_id = "page-4"'))
    assert [e.request_id for e in one.audit_events] == ["page-4"]
    event = json_format.MessageToDict(one.audit_events[0])
    assert event["outcome"] == "AUDIT_OUTCOME_SUCCESS"
    assert len(event["hash"]) == 64
    bad_requests = [
        admin_pb2.ListAuditEventsRequest(filter="actor ~ x"),
        admin_pb2.ListAuditEventsRequest(order_by="time"),
        admin_pb2.ListAuditEventsRequest(order_by="sequence", page_token=newest.next_page_token),
        admin_pb2.ListAuditEventsRequest(page_token="%%%"),
    ]
    for bad in bad_requests:
        with pytest.raises(aio.AioRpcError) as error:
            await admin.ListAuditEvents(bad)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert status_details(error.value)["BadRequest"].field_violations


async def test_verify_audit_log_rpc_reports_the_altered_sequence(server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(server.channel)
    admin = admin_grpc.AdminServiceStub(server.channel)
    for _ in range(5):
        await chat.Complete(_chat())
    await _events(server.gateway)
    result = await admin.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest())
    assert result.ok
    assert result.checked_count == 5
    assert not result.HasField("first_broken_sequence")
    async with server.gateway.db.begin() as connection:
        await connection.execute(update(audit_events).where(audit_events.c.sequence == 3).values(actor="x"))
    result = await admin.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(end_sequence=5))
    assert (result.ok, result.first_broken_sequence, result.detail) == (False, 3, "hash mismatch")
    ranged = await admin.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(start_sequence=4, end_sequence=5))
    assert ranged.ok
    assert ranged.checked_count == 2
    with pytest.raises(aio.AioRpcError) as error:
        await admin.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(start_sequence=0))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_streams_are_audited_when_they_end(server: RunningServer) -> None:
    chat = chat_grpc.ChatServiceStub(server.channel)
    message = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text="hello")])
    chunks = [
        c
        async for c in chat.StreamComplete(
            chat_pb2.StreamCompleteRequest(model="mock/echo", messages=[message])
        )
    ]
    assert chunks
    cut = chat.StreamComplete(chat_pb2.StreamCompleteRequest(model="mock/die-midway", messages=[message]))
    with pytest.raises(aio.AioRpcError):
        async for _ in cut:
            pass
    events = await _events(server.gateway)
    assert [(e["action"], e["outcome"], e["reason"]) for e in events] == [
        ("chat.ChatService/StreamComplete", 1, ""),
        ("chat.ChatService/StreamComplete", 3, "UPSTREAM_STREAM_INTERRUPTED"),
    ]
