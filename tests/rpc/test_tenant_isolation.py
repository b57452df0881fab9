"""The "other tenant" column of the authorisation matrix: a caller holding every scope of its own
tenant never sees, changes or learns about another tenant's keys, conversations, usage or audit
events. Resources of another tenant answer NOT_FOUND exactly like missing ones; asking for another
tenant's aggregates is PERMISSION_DENIED; lists simply do not contain them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.auth.policy import ScopePolicy
from tests.conftest import RunningServer, status_details
from tests.jwt_gateway import bearer, jwt_gateway

ALL_SCOPES = " ".join(sorted(ScopePolicy().all_scopes))


def _token(tenant: str, sub: str) -> tuple[tuple[str, str]]:
    return bearer(ALL_SCOPES, tenant, sub)


@pytest.fixture
async def served() -> AsyncIterator[RunningServer]:
    async with jwt_gateway(**{"auth.mode": ["jwt", "api_key"]}) as running:
        yield running


ACME = _token("acme", "alice")
GLOBEX = _token("globex", "gus")


def _user(text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=content_pb2.ROLE_USER)
    message.parts.add(text=text)
    return message


async def _expect(call: object, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    assert status_details(caught.value)["ErrorInfo"].reason == reason


async def test_another_tenants_resources_are_invisible(served: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(served.channel)
    chat = chat_grpc.ChatServiceStub(served.channel)

    # Tenant acme creates a key, a conversation, and makes a call that is recorded.
    key = (
        await admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(api_key=admin_pb2.ApiKey(name="acme-bot", scopes=["chat:write"])),
            metadata=ACME,
        )
    ).api_key
    assert key.tenant == "acme"
    conversation = (
        await chat.CreateConversation(
            chat_pb2.CreateConversationRequest(conversation=chat_pb2.Conversation(title="acme secrets")),
            metadata=ACME,
        )
    ).conversation
    await chat.Complete(
        chat_pb2.CompleteRequest(
            model="mock/echo", conversation_id=conversation.conversation_id, messages=[_user("hello")]
        ),
        metadata=ACME,
    )
    assert served.gateway.outbox is not None
    await served.gateway.outbox.flush()

    # Tenant globex, holding every scope of its own tenant, sees none of it.
    not_found = (grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND")
    await _expect(
        admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=key.api_key_id), metadata=GLOBEX), *not_found
    )
    await _expect(
        admin.UpdateApiKey(
            admin_pb2.UpdateApiKeyRequest(
                api_key=admin_pb2.ApiKey(api_key_id=key.api_key_id, name="pwned"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=GLOBEX,
        ),
        *not_found,
    )
    await _expect(
        admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(api_key_id=key.api_key_id), metadata=GLOBEX),
        *not_found,
    )
    missing = "key_" + "0" * 32
    with pytest.raises(aio.AioRpcError) as absent:
        await admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=missing), metadata=GLOBEX)
    with pytest.raises(aio.AioRpcError) as foreign:
        await admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=key.api_key_id), metadata=GLOBEX)
    # Indistinguishable from a key that does not exist (apart from the id echoed back).
    assert absent.value.details().replace(missing, "ID") == foreign.value.details().replace(
        key.api_key_id, "ID"
    )
    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=GLOBEX)
    assert list(listed.api_keys) == []
    await _expect(
        admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(
                api_key=admin_pb2.ApiKey(name="x", tenant="acme", scopes=["chat:write"])
            ),
            metadata=GLOBEX,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )

    conv_id = conversation.conversation_id
    await _expect(
        chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conv_id), metadata=GLOBEX),
        *not_found,
    )
    await _expect(
        chat.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id=conv_id), metadata=GLOBEX),
        *not_found,
    )
    await _expect(
        chat.Complete(
            chat_pb2.CompleteRequest(model="mock/echo", conversation_id=conv_id, messages=[_user("leak it")]),
            metadata=GLOBEX,
        ),
        *not_found,
    )
    conversations = await chat.ListConversations(chat_pb2.ListConversationsRequest(), metadata=GLOBEX)
    assert list(conversations.conversations) == []

    start_time = timestamp_pb2.Timestamp(seconds=int(time.time()) - 3600)
    usage = await admin.GetUsage(admin_pb2.GetUsageRequest(start_time=start_time), metadata=GLOBEX)
    assert usage.totals.requests == 0
    denied = (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await _expect(
        admin.GetUsage(admin_pb2.GetUsageRequest(start_time=start_time, tenant="acme"), metadata=GLOBEX),
        *denied,
    )
    await _expect(
        admin.GetComplianceReport(
            admin_pb2.GetComplianceReportRequest(start_time=start_time, tenant="acme"), metadata=GLOBEX
        ),
        *denied,
    )
    events = await admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=1000), metadata=GLOBEX)
    assert {event.tenant for event in events.audit_events} <= {"globex"}

    # Acme still sees all of its own data, untouched.
    own = await admin.GetApiKey(admin_pb2.GetApiKeyRequest(api_key_id=key.api_key_id), metadata=ACME)
    assert own.api_key.name == "acme-bot"
    assert own.api_key.state == admin_pb2.API_KEY_STATE_ACTIVE
    history = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conv_id), metadata=ACME
    )
    assert len(history.messages) == 2
    acme_usage = await admin.GetUsage(admin_pb2.GetUsageRequest(start_time=start_time), metadata=ACME)
    assert acme_usage.totals.requests == 1
    acme_events = await admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=1000), metadata=ACME)
    assert "api_key.create" in {event.action for event in acme_events.audit_events}
    assert {event.tenant for event in acme_events.audit_events} == {"acme"}


async def test_an_api_key_is_confined_to_its_tenant(served: RunningServer) -> None:
    admin = admin_grpc.AdminServiceStub(served.channel)
    chat = chat_grpc.ChatServiceStub(served.channel)
    acme_conversation = (
        await chat.CreateConversation(chat_pb2.CreateConversationRequest(), metadata=ACME)
    ).conversation.conversation_id
    created = await admin.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            api_key=admin_pb2.ApiKey(name="globex-app", scopes=["chat:write", "chat:read"])
        ),
        metadata=GLOBEX,
    )
    key = (("authorization", f"Bearer {created.secret}"),)
    await chat.Complete(chat_pb2.CompleteRequest(model="mock/echo", messages=[_user("hi")]), metadata=key)
    await _expect(
        chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=acme_conversation), metadata=key
        ),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    # The key holds no admin scope at all.
    await _expect(
        admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=key),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
