"""Conversation RPCs and chat turns on conversations, through a real in-process server (SQLite)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from tests.conftest import RunningServer, status_details
from tests.jwt_gateway import bearer, jwt_gateway


def _text(role: content_pb2.Role.ValueType, text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=role)
    message.parts.add(text=text)
    return message


def user(text: str) -> content_pb2.Message:
    return _text(content_pb2.ROLE_USER, text)


def system(text: str) -> content_pb2.Message:
    return _text(content_pb2.ROLE_SYSTEM, text)


def texts(messages: Any) -> list[str]:
    return ["".join(p.text for p in m.message.parts) for m in messages]


async def create(stub: chat_grpc.ChatServiceStub, **fields: Any) -> chat_pb2.Conversation:
    messages = fields.pop("messages", [system("be brief")])
    request = chat_pb2.CreateConversationRequest(
        conversation=chat_pb2.Conversation(**fields), messages=messages
    )
    return (await stub.CreateConversation(request)).conversation


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    """Poll `check` (the server stores cancelled turns in a task this test cannot await)."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def stub(server: RunningServer) -> chat_grpc.ChatServiceStub:
    return chat_grpc.ChatServiceStub(server.channel)


async def test_round_trip_two_turns(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub, title="trip", model="mock/echo", labels={"team": "search"})
    assert conversation.conversation_id.startswith("conv_")
    assert conversation.message_count == 1
    assert conversation.owner
    for question in ("first question", "second question"):
        answer = await stub.Complete(
            chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user(question)])
        )
        assert answer.message.parts[0].text == f"echo: {question}"
    got = await stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
    )
    assert texts(got.messages) == [
        "be brief",
        "first question",
        "echo: first question",
        "second question",
        "echo: second question",
    ]
    assert [m.index for m in got.messages] == [0, 1, 2, 3, 4]
    assert all(m.complete for m in got.messages)
    assert got.messages[2].message.role == content_pb2.ROLE_ASSISTANT
    assert got.conversation.message_count == 5
    assert got.conversation.update_time.ToMicroseconds() >= got.conversation.create_time.ToMicroseconds()
    assert got.next_page_token == ""


async def test_get_pages_messages(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub, messages=[user(f"m{i}") for i in range(5)])
    seen: list[str] = []
    token = ""
    for _ in range(3):
        page = await stub.GetConversation(
            chat_pb2.GetConversationRequest(
                conversation_id=conversation.conversation_id, page_size=2, page_token=token
            )
        )
        seen += texts(page.messages)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["m0", "m1", "m2", "m3", "m4"]
    assert token == ""
    other = await create(stub)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.GetConversation(
            chat_pb2.GetConversationRequest(
                conversation_id=other.conversation_id, page_token=page.next_page_token or "x"
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(info.value)["BadRequest"].field_violations[0].field == "page_token"


async def test_list_filters_and_pages(stub: chat_grpc.ChatServiceStub) -> None:
    for i in range(3):
        await create(stub, title=f"search {i}", labels={"team": "search"})
    await create(stub, title="ads", labels={"team": "ads"})
    listed = await stub.ListConversations(chat_pb2.ListConversationsRequest(filter='labels.team = "search"'))
    assert [c.title for c in listed.conversations] == ["search 2", "search 1", "search 0"]
    first = await stub.ListConversations(chat_pb2.ListConversationsRequest(page_size=3))
    rest = await stub.ListConversations(
        chat_pb2.ListConversationsRequest(page_size=3, page_token=first.next_page_token)
    )
    assert [c.title for c in first.conversations] == ["ads", "search 2", "search 1"]
    assert [c.title for c in rest.conversations] == ["search 0"]
    assert rest.next_page_token == ""
    owner = first.conversations[0].owner
    mine = await stub.ListConversations(chat_pb2.ListConversationsRequest(filter=f'owner = "{owner}"'))
    assert len(mine.conversations) == 4
    none = await stub.ListConversations(chat_pb2.ListConversationsRequest(filter='owner = "nobody"'))
    assert list(none.conversations) == []
    with pytest.raises(aio.AioRpcError) as info:
        await stub.ListConversations(chat_pb2.ListConversationsRequest(filter="secret = 1"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_delete(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub, messages=[user("hello")])
    await stub.DeleteConversation(
        chat_pb2.DeleteConversationRequest(conversation_id=conversation.conversation_id)
    )
    for call in (
        stub.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)),
        stub.DeleteConversation(
            chat_pb2.DeleteConversationRequest(conversation_id=conversation.conversation_id)
        ),
    ):
        with pytest.raises(aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert status_details(info.value)["ErrorInfo"].reason == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (chat_pb2.GetConversationRequest(), "conversation_id"),
        (chat_pb2.GetConversationRequest(conversation_id="c", page_size=-1), "page_size"),
        (chat_pb2.DeleteConversationRequest(), "conversation_id"),
        (chat_pb2.ListConversationsRequest(page_token="garbage"), "page_token"),
        (chat_pb2.ListConversationsRequest(page_size=-5), "page_size"),
        (
            chat_pb2.CreateConversationRequest(conversation=chat_pb2.Conversation(title="t" * 513)),
            "conversation.title",
        ),
        (
            chat_pb2.CreateConversationRequest(conversation=chat_pb2.Conversation(context_policy=99)),  # type: ignore[arg-type]
            "conversation.context_policy",
        ),
        (
            chat_pb2.CreateConversationRequest(conversation=chat_pb2.Conversation(labels={"Bad Key": "v"})),
            "conversation.labels['Bad Key']",
        ),
        (
            chat_pb2.CreateConversationRequest(messages=[content_pb2.Message(role=content_pb2.ROLE_USER)]),
            "messages[0].parts",
        ),
    ],
)
async def test_validation(stub: chat_grpc.ChatServiceStub, request_: Any, field: str) -> None:
    method = {
        chat_pb2.GetConversationRequest: stub.GetConversation,
        chat_pb2.DeleteConversationRequest: stub.DeleteConversation,
        chat_pb2.ListConversationsRequest: stub.ListConversations,
        chat_pb2.CreateConversationRequest: stub.CreateConversation,
    }[type(request_)]
    with pytest.raises(aio.AioRpcError) as info:
        await method(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == [field]


async def test_turn_needs_a_new_message_and_an_existing_conversation(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Complete(
            chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, model="mock/echo")
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Complete(chat_pb2.CompleteRequest(conversation_id="conv_missing", messages=[user("x")]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def _streamed(stub: chat_grpc.ChatServiceStub, conversation_id: str, model: str) -> list[Any]:
    request = chat_pb2.StreamCompleteRequest(
        conversation_id=conversation_id, model=model, messages=[user("tell me")]
    )
    return [event async for event in stub.StreamComplete(request)]


async def test_streamed_reply_is_appended(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub)
    events = await _streamed(stub, conversation.conversation_id, "mock/echo")
    assert events[0].HasField("route")
    assert events[-1].HasField("finish")
    got = await stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
    )
    assert texts(got.messages) == ["be brief", "tell me", "echo: tell me"]
    assert [m.complete for m in got.messages] == [True, True, True]


async def test_cut_stream_is_stored_incomplete(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub)
    with pytest.raises(aio.AioRpcError) as info:
        await _streamed(stub, conversation.conversation_id, "mock/die-midway")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    got = await stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
    )
    assert texts(got.messages) == ["be brief", "tell me", "this answer will be cut off part way through"[:16]]
    assert [m.complete for m in got.messages] == [True, True, False]


async def test_failure_before_content_stores_nothing(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub)
    with pytest.raises(aio.AioRpcError):
        await _streamed(stub, conversation.conversation_id, "mock/unavailable")
    with pytest.raises(aio.AioRpcError):
        await stub.Complete(
            chat_pb2.CompleteRequest(
                conversation_id=conversation.conversation_id, model="mock/unavailable", messages=[user("x")]
            )
        )
    got = await stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
    )
    assert got.conversation.message_count == 1


async def test_client_cancel_stores_the_partial_reply(stub: chat_grpc.ChatServiceStub) -> None:
    conversation = await create(stub)
    request = chat_pb2.StreamCompleteRequest(
        conversation_id=conversation.conversation_id,
        model="mock/slow",
        messages=[user("a long story please")],
    )
    call = stub.StreamComplete(request)
    received = ""
    async for event in call:
        if event.HasField("delta"):
            received += event.delta.text
            break
    call.cancel()
    assert received

    async def stored() -> bool:
        got = await stub.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
        )
        return got.conversation.message_count == 3

    await eventually(stored)
    got = await stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.conversation_id)
    )
    assert got.messages[2].complete is False
    partial = texts(got.messages)[2]
    assert partial.startswith(received)
    assert "echo: a long story please".startswith(partial)


@pytest.fixture
async def jwt_server() -> AsyncIterator[RunningServer]:
    async with jwt_gateway() as running:
        yield running


def _bearer(subject: str, tenant: str) -> tuple[tuple[str, str]]:
    return bearer("chat:read chat:write", tenant, subject)


async def test_other_tenant_sees_not_found(jwt_server: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(jwt_server.channel)
    alice, mallory, bob = _bearer("alice", "acme"), _bearer("mallory", "globex"), _bearer("bob", "acme")
    request = chat_pb2.CreateConversationRequest(conversation=chat_pb2.Conversation(title="private"))
    conversation = (await stub.CreateConversation(request, metadata=alice)).conversation
    assert conversation.owner == "alice"
    cid = conversation.conversation_id
    attempts = [
        stub.GetConversation(chat_pb2.GetConversationRequest(conversation_id=cid), metadata=mallory),
        stub.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id=cid), metadata=mallory),
        stub.Complete(
            chat_pb2.CompleteRequest(conversation_id=cid, model="mock/echo", messages=[user("hi")]),
            metadata=mallory,
        ),
    ]
    for attempt in attempts:
        with pytest.raises(aio.AioRpcError) as info:
            await attempt
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == f"conversation {cid!r} not found"
    listed = await stub.ListConversations(chat_pb2.ListConversationsRequest(), metadata=mallory)
    assert list(listed.conversations) == []
    same_tenant = await stub.ListConversations(chat_pb2.ListConversationsRequest(), metadata=bob)
    assert [c.conversation_id for c in same_tenant.conversations] == [cid]
    got = await stub.GetConversation(chat_pb2.GetConversationRequest(conversation_id=cid), metadata=alice)
    assert got.conversation.message_count == 0
