"""Conversations on both engines: encryption at rest, atomic appends, context policies, streams.

The conversation layer runs against a real database (`database` fixture: SQLite and PostgreSQL) and
the mock provider wrapped to record every request it receives.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.app import Gateway
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState, current_call
from homa_server.providers.base import CallContext
from homa_server.providers.mock import MockProvider
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.routing.context import SUMMARY_PREFIX, Limits, TokenMeter
from homa_server.routing.conversation import ConversationTurns
from homa_server.routing.resolver import Target
from homa_server.security.crypto import Keyring
from homa_server.store.conversations import ConversationStore, NewConversation, StoredConversation
from homa_server.store.database import Database
from homa_server.store.tables import conversation_messages
from tests.conftest import make_settings
from tests.storage import TEST_ENCRYPTION_KEY

SECRET = "the launch code is swordfish-42"
RECEIVED: list[chat_pb2.CompleteRequest] = []


class RecordingMock(MockProvider):
    """The mock provider, remembering every request (summary calls included)."""

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        RECEIVED.append(request)
        return await super().complete_chat(request, ctx)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        RECEIVED.append(request)
        async for event in super().stream_chat(request, ctx):
            yield event


def text_message(role: content_pb2.Role.ValueType, text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=role)
    message.parts.add(text=text)
    return message


def user(text: str) -> content_pb2.Message:
    return text_message(content_pb2.ROLE_USER, text)


def plain(message: content_pb2.Message) -> str:
    return "".join(p.text for p in message.parts)


@dataclass
class Harness:
    store: ConversationStore
    gateway: Gateway
    keyring: Keyring
    database: Database
    limits: Limits

    def _limits(self, target: Target, requested: int | None) -> Limits:
        if target.model == "summary":  # the summary model has a large window
            return Limits(4096, requested or 256)
        return self.limits

    def turns(self) -> ConversationTurns:
        return ConversationTurns(
            self.store,
            self.gateway.dispatcher,
            self.gateway.resolver,
            self.gateway.settings.conversations,
            limits_of=self._limits,
        )

    async def conversation(
        self, policy: int = 0, history: int = 0, model: str = "mock/echo"
    ) -> StoredConversation:
        """A conversation with a system prompt and `history` user/assistant turns (about 20 tokens each)."""
        messages = [text_message(content_pb2.ROLE_SYSTEM, "You are terse.")]
        for i in range(history):
            messages.append(user(f"question {i}: what is the colour of the sky over the sea today"))
            messages.append(
                text_message(content_pb2.ROLE_ASSISTANT, f"answer {i}: blue and quite bright too")
            )
        return await self.store.create(
            NewConversation(tenant="acme", owner="alice", model=model, context_policy=policy), messages
        )


@pytest.fixture
def principal() -> Iterator[Principal]:
    who = Principal(
        subject="alice", tenant="acme", scopes=frozenset({"chat:write", "chat:read"}), method="jwt"
    )
    token = current_call.set(CallState(request_id="req-1", method="test", principal=who))
    yield who
    current_call.reset(token)


@pytest.fixture
async def harness(database: Database, principal: Principal) -> AsyncIterator[Harness]:
    settings = make_settings(
        **{
            "providers": {
                "mock": {"kind": "mock", "options": {"scenarios": {"summary": {"text": "SUMMARY-TEXT"}}}}
            },
            "conversations.summary_model": "mock/summary",
        }
    )
    gateway = Gateway.from_settings(settings, {**BUILTIN_KINDS, "mock": RecordingMock})
    keyring = Keyring({"a": TEST_ENCRYPTION_KEY}, "a")
    RECEIVED.clear()
    try:
        yield Harness(ConversationStore(database, keyring), gateway, keyring, database, Limits(4096, 256))
    finally:
        RECEIVED.clear()
        await gateway.aclose()


async def test_contents_are_encrypted_and_bound_to_their_row(harness: Harness) -> None:
    first = await harness.store.create(NewConversation(tenant="acme", owner="alice"), [user(SECRET)])
    second = await harness.store.create(NewConversation(tenant="acme", owner="alice"))
    async with harness.database.begin() as conn:
        raw = (await conn.execute(select(conversation_messages.c.message))).scalars().all()
    assert len(raw) == 1
    assert b"swordfish" not in bytes(raw[0])
    assert SECRET.encode() not in bytes(raw[0])
    assert [plain(m.message) for m in await harness.store.messages(first)] == [SECRET]
    async with harness.database.begin() as conn:  # move the row to the other conversation
        await conn.execute(
            update(conversation_messages)
            .where(conversation_messages.c.conversation_id == first.conversation_id)
            .values(conversation_id=second.conversation_id)
        )
    with pytest.raises(GatewayError) as info:
        await harness.store.messages(second)
    assert info.value.code == Code.DATA_LOSS
    assert info.value.reason == Reason.DECRYPTION_FAILED
    assert "swordfish" not in info.value.message


async def test_key_rotation_keeps_old_contents_readable(harness: Harness) -> None:
    conversation = await harness.store.create(
        NewConversation(tenant="acme", owner="alice"), [user("under key a")]
    )
    rotated = harness.keyring.with_primary("b", base64.b64encode(os.urandom(32)).decode())
    store = ConversationStore(harness.database, rotated)
    await store.append(conversation, [(user("under key b"), True)])
    messages = await store.messages(conversation)
    assert [plain(m.message) for m in messages] == ["under key a", "under key b"]
    async with harness.database.begin() as conn:
        raw = (await conn.execute(select(conversation_messages.c.message).order_by("idx"))).scalars().all()
    assert [rotated.key_id_of(bytes(r)) for r in raw] == ["a", "b"]
    with pytest.raises(GatewayError) as info:  # the old keyring cannot read what key b wrote
        await harness.store.messages(conversation)
    assert info.value.reason == Reason.ENCRYPTION_KEY_UNKNOWN


async def test_concurrent_appends_never_reuse_an_index(harness: Harness) -> None:
    conversation = await harness.conversation()
    starts = await asyncio.gather(
        *(
            harness.store.append(conversation, [(user(f"u{i}"), True), (user(f"r{i}"), True)])
            for i in range(6)
        )
    )
    assert sorted(starts) == [1, 3, 5, 7, 9, 11]
    messages = await harness.store.messages(conversation)
    assert [m.index for m in messages] == list(range(13))
    for start in starts:  # each turn's two messages are adjacent: appends are atomic
        pair = [plain(m.message) for m in messages[start : start + 2]]
        assert pair[0][1:] == pair[1][1:]
    assert (await harness.store.get(conversation.conversation_id, "acme")).message_count == 13
    with pytest.raises(GatewayError) as info:
        await harness.store.get(conversation.conversation_id, "globex")
    assert info.value.code == Code.NOT_FOUND


async def test_trim_drops_oldest_turns_and_keeps_the_system_message(harness: Harness) -> None:
    conversation = await harness.conversation(history=8)
    harness.limits = Limits(window=160, reserve=40)
    answer = await harness.turns().complete(
        chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user("and now?")]),
        None,
    )
    assert plain(answer.message) == "echo: and now?"
    sent = RECEIVED[-1]
    assert TokenMeter("echo").total(list(sent.messages)) <= harness.limits.input_budget
    assert plain(sent.messages[0]) == "You are terse."
    assert plain(sent.messages[1]).startswith("question ")  # whole turns: starts with a user message
    assert "question 0:" not in " ".join(plain(m) for m in sent.messages)
    assert plain(sent.messages[-2]) == "answer 7: blue and quite bright too"
    assert plain(sent.messages[-1]) == "and now?"
    assert len(sent.messages) < 18
    stored = await harness.store.messages(conversation)
    assert len(stored) == 19  # trimming never deletes history


async def test_summarize_calls_the_summary_model_once_and_stores_the_summary(harness: Harness) -> None:
    conversation = await harness.conversation(policy=chat_pb2.CONTEXT_POLICY_SUMMARIZE, history=8)
    harness.limits = Limits(window=240, reserve=40)
    turns = harness.turns()
    request = chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user("next")])
    await turns.complete(request, None)
    summary_calls = [r for r in RECEIVED if r.model == "mock/summary"]
    assert len(summary_calls) == 1
    assert "question 0:" in plain(summary_calls[0].messages[-1])
    sent = RECEIVED[-1]
    assert sent.model == "mock/echo"
    assert plain(sent.messages[0]) == "You are terse."
    assert plain(sent.messages[1]) == SUMMARY_PREFIX + "SUMMARY-TEXT"
    assert TokenMeter("echo").total(list(sent.messages)) <= harness.limits.input_budget
    stored = await harness.store.get(conversation.conversation_id, "acme")
    assert stored.summary is not None
    assert plain(stored.summary) == SUMMARY_PREFIX + "SUMMARY-TEXT"
    assert stored.summary_upto > 1
    assert plain(sent.messages[2]) == plain(
        (await harness.store.messages(stored))[stored.summary_upto].message
    )
    RECEIVED.clear()
    await turns.complete(request, None)  # fits now: no second summary, the stored one is sent
    assert [r.model for r in RECEIVED] == ["mock/echo"]
    assert plain(RECEIVED[0].messages[1]) == SUMMARY_PREFIX + "SUMMARY-TEXT"


async def test_fail_policy_and_oversized_turns_are_context_length_exceeded(harness: Harness) -> None:
    conversation = await harness.conversation(policy=chat_pb2.CONTEXT_POLICY_FAIL, history=8)
    harness.limits = Limits(window=160, reserve=40)
    turns = harness.turns()
    request = chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user("x")])
    huge = chat_pb2.CompleteRequest(
        conversation_id=conversation.conversation_id, messages=[user("word " * 500)]
    )
    trimmed = await harness.conversation(history=2)
    huge_on_trim = chat_pb2.CompleteRequest(
        conversation_id=trimmed.conversation_id, messages=[user("word " * 500)]
    )
    for bad in (request, huge, huge_on_trim):
        with pytest.raises(GatewayError) as info:
            await turns.complete(bad, None)
        assert info.value.code == Code.INVALID_ARGUMENT
        assert info.value.reason == Reason.CONTEXT_LENGTH_EXCEEDED
    assert RECEIVED == []
    assert len(await harness.store.messages(conversation)) == 17


async def test_other_tenant_is_not_found(harness: Harness) -> None:
    conversation = await harness.conversation()
    stranger = Principal(subject="eve", tenant="globex", scopes=frozenset({"chat:write"}), method="jwt")
    token = current_call.set(CallState(request_id="r", method="m", principal=stranger))
    try:
        with pytest.raises(GatewayError) as info:
            await harness.turns().complete(
                chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user("hi")]),
                None,
            )
    finally:
        current_call.reset(token)
    assert info.value.code == Code.NOT_FOUND
    assert RECEIVED == []


async def test_closing_a_stream_mid_way_stores_the_partial_reply(harness: Harness) -> None:
    conversation = await harness.conversation()
    request = chat_pb2.CompleteRequest(
        conversation_id=conversation.conversation_id, model="mock/slow", messages=[user("a long story")]
    )
    stream = harness.turns().stream(request, None)
    assert (await anext(stream)).HasField("route")
    first = await anext(stream)
    await stream.aclose()
    messages = await harness.store.messages(conversation)
    assert [plain(m.message) for m in messages[1:]] == ["a long story", first.delta.text]
    assert [m.complete for m in messages] == [True, True, False]


async def test_cancelling_the_consumer_still_stores_the_partial_reply(harness: Harness) -> None:
    conversation = await harness.conversation()
    turns = harness.turns()
    request = chat_pb2.CompleteRequest(
        conversation_id=conversation.conversation_id, model="mock/slow", messages=[user("a long story")]
    )
    got_delta = asyncio.Event()

    async def consume() -> None:
        async for event in turns.stream(request, None):
            if event.HasField("delta"):
                got_delta.set()

    task = asyncio.create_task(consume())
    await got_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await turns.drain()
    messages = await harness.store.messages(conversation)
    assert len(messages) == 3
    assert messages[2].complete is False
    assert "echo: a long story".startswith(plain(messages[2].message))
    assert plain(messages[2].message)


async def test_summarize_can_fold_the_whole_history(harness: Harness) -> None:
    conversation = await harness.conversation(policy=chat_pb2.CONTEXT_POLICY_SUMMARIZE, history=3)
    harness.limits = Limits(window=140, reserve=40)
    request = chat_pb2.CompleteRequest(conversation_id=conversation.conversation_id, messages=[user("next")])
    await harness.turns().complete(request, None)
    sent = RECEIVED[-1]
    assert [plain(m) for m in sent.messages] == ["You are terse.", SUMMARY_PREFIX + "SUMMARY-TEXT", "next"]
    stored = await harness.store.get(conversation.conversation_id, "acme")
    assert stored.summary_upto == 7  # every stored turn is folded; the new one starts at 7
    assert stored.message_count == 9


async def test_history_is_sent_in_order_and_tool_turns_round_trip(harness: Harness) -> None:
    conversation = await harness.conversation(history=1, model="mock/tool")
    turns = harness.turns()
    cid = conversation.conversation_id
    first = await turns.complete(
        chat_pb2.CompleteRequest(conversation_id=cid, messages=[user("weather?")]), None
    )
    call = first.message.parts[0].tool_call
    assert call.name == "get_weather"
    assert RECEIVED[-1].model == "mock/tool"  # the conversation's model
    result = content_pb2.Message(role=content_pb2.ROLE_TOOL)
    result.parts.add(tool_result=content_pb2.ToolResult(tool_call_id=call.id, content="sunny"))
    second = await turns.complete(chat_pb2.CompleteRequest(conversation_id=cid, messages=[result]), None)
    assert plain(second.message) == "tool results: sunny"
    roles = [m.role for m in RECEIVED[-1].messages]
    assert roles == [
        content_pb2.ROLE_SYSTEM,
        content_pb2.ROLE_USER,
        content_pb2.ROLE_ASSISTANT,
        content_pb2.ROLE_USER,
        content_pb2.ROLE_ASSISTANT,
        content_pb2.ROLE_TOOL,
    ]
    assert RECEIVED[-1].messages[4].parts[0].tool_call.id == call.id
    stored = await harness.store.messages(await harness.store.get(cid, "acme"))
    assert [m.message.role for m in stored] == [*roles, content_pb2.ROLE_ASSISTANT]
    assert all(m.complete for m in stored)
