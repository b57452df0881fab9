"""Conversations repository over `conversations` and `conversation_messages`, contents encrypted.

Contract:
    * Every message is stored as a keyring envelope of the serialized `homa.type.v1.Message`, with
      associated data binding tenant, conversation id and index (`message_aad`): a row copied to another
      conversation, tenant or position fails to decrypt (DATA_LOSS / DECRYPTION_FAILED). The SUMMARIZE
      policy's summary is sealed the same way (`summary_aad`).
    * Reads take `tenant`: a conversation of another tenant is NOT_FOUND, indistinguishable from a
      missing one; `None` means any tenant (cross-tenant operators only).
    * `append` stores a whole turn in ONE transaction: it first bumps `message_count` (taking the row
      lock on PostgreSQL and the write lock on SQLite), then inserts the messages at the indexes the
      bump reserved, so concurrent appends to one conversation serialise and never reuse an index.
    * `list` pages newest first with an opaque keyset token bound to the tenant and filter it was
      issued for; filters are AIP-160 over owner, title, model, create/update time and labels.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Row

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field, resource_not_found
from homa_server.security.crypto import Keyring
from homa_server.store.database import Database, now_us
from homa_server.store.filtering import FilterField, compile_filter
from homa_server.store.records import new_id
from homa_server.store.tables import conversation_messages, conversations

FILTER_FIELDS: Mapping[str, FilterField] = {
    "owner": FilterField(conversations.c.owner),
    "title": FilterField(conversations.c.title),
    "model": FilterField(conversations.c.model),
    "create_time": FilterField(conversations.c.create_time_us, "time"),
    "update_time": FilterField(conversations.c.update_time_us, "time"),
}


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def message_aad(tenant: str, conversation_id: str, index: int) -> bytes:
    """Associated data of the message at `index`: binds the envelope to its row."""
    return b"homa.conversation_message\x00" + _field(tenant) + _field(conversation_id) + _field(str(index))


def summary_aad(tenant: str, conversation_id: str, upto: int) -> bytes:
    """Associated data of a conversation's summary (covering messages before `upto`)."""
    return b"homa.conversation_summary\x00" + _field(tenant) + _field(conversation_id) + _field(str(upto))


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp from epoch microseconds."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """One `conversations` row, summary decrypted."""

    conversation_id: str
    tenant: str
    owner: str
    title: str
    model: str
    labels: dict[str, str]
    context_policy: int
    message_count: int
    create_time_us: int
    update_time_us: int
    summary: content_pb2.Message | None = None
    summary_upto: int = 0

    def to_proto(self) -> chat_pb2.Conversation:
        """The API resource."""
        return chat_pb2.Conversation(
            conversation_id=self.conversation_id,
            title=self.title,
            model=self.model,
            labels=self.labels,
            context_policy=self.context_policy,  # type: ignore[arg-type]
            owner=self.owner,
            create_time=timestamp(self.create_time_us),
            update_time=timestamp(self.update_time_us),
            message_count=self.message_count,
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One decrypted message of a conversation."""

    index: int
    message: content_pb2.Message
    complete: bool = True
    create_time_us: int = 0

    def to_proto(self) -> chat_pb2.ConversationMessage:
        """The API resource."""
        return chat_pb2.ConversationMessage(
            index=self.index,
            message=self.message,
            complete=self.complete,
            create_time=timestamp(self.create_time_us),
        )


@dataclass(frozen=True, slots=True)
class NewConversation:
    """Fields of a conversation to create."""

    tenant: str
    owner: str
    title: str = ""
    model: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    context_policy: int = 0


def _digest(tenant: str | None, filter_text: str) -> str:
    return hashlib.sha256(json.dumps([tenant, filter_text]).encode()).hexdigest()[:16]


def _encode_token(created: int, conversation_id: str, digest: str) -> str:
    raw = json.dumps([created, conversation_id, digest], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> tuple[int, str]:
    try:
        created, conversation_id, issued_for = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        )
        if not isinstance(created, int) or not isinstance(conversation_id, str) or issued_for != digest:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid_field("page_token", "not a token returned by this API for this request") from None
    return created, conversation_id


class ConversationStore:
    """Reads and writes conversations (see the module docstring)."""

    def __init__(self, database: Database, keyring: Keyring) -> None:
        self._db = database
        self._keyring = keyring

    def _row(self, row: Row[Any], *, with_summary: bool = True) -> StoredConversation:
        """The row as a dataclass; the summary is decrypted only when asked (not for listings)."""
        summary = None
        if with_summary and row.summary is not None:
            plain = self._keyring.decrypt(
                row.summary, summary_aad(row.tenant, row.conversation_id, row.summary_upto)
            )
            summary = content_pb2.Message.FromString(plain)
        return StoredConversation(
            conversation_id=row.conversation_id,
            tenant=row.tenant,
            owner=row.owner,
            title=row.title,
            model=row.model,
            labels=dict(row.labels or {}),
            context_policy=row.context_policy,
            message_count=row.message_count,
            create_time_us=row.create_time_us,
            update_time_us=row.update_time_us,
            summary=summary,
            summary_upto=row.summary_upto,
        )

    def _message_rows(
        self, tenant: str, conversation_id: str, first: int, items: Sequence[tuple[content_pb2.Message, bool]]
    ) -> list[dict[str, Any]]:
        now = now_us()
        return [
            {
                "conversation_id": conversation_id,
                "idx": first + offset,
                "tenant": tenant,
                "message": self._keyring.encrypt(
                    message.SerializeToString(deterministic=True),
                    message_aad(tenant, conversation_id, first + offset),
                ),
                "complete": complete,
                "create_time_us": now,
            }
            for offset, (message, complete) in enumerate(items)
        ]

    async def create(
        self, fields: NewConversation, messages: Sequence[content_pb2.Message] = ()
    ) -> StoredConversation:
        """Insert a conversation with its initial messages (one transaction) and return it."""
        now = now_us()
        conversation_id = new_id("conv")
        values = {
            "conversation_id": conversation_id,
            "tenant": fields.tenant,
            "owner": fields.owner,
            "title": fields.title,
            "model": fields.model,
            "labels": dict(fields.labels),
            "context_policy": fields.context_policy,
            "message_count": len(messages),
            "summary": None,
            "summary_upto": 0,
            "create_time_us": now,
            "update_time_us": now,
        }
        rows = self._message_rows(fields.tenant, conversation_id, 0, [(m, True) for m in messages])
        async with self._db.begin() as conn:
            await conn.execute(conversations.insert().values(**values))
            if rows:
                await conn.execute(conversation_messages.insert(), rows)
        return StoredConversation(
            conversation_id=conversation_id,
            tenant=fields.tenant,
            owner=fields.owner,
            title=fields.title,
            model=fields.model,
            labels=dict(fields.labels),
            context_policy=fields.context_policy,
            message_count=len(messages),
            create_time_us=now,
            update_time_us=now,
        )

    async def get(self, conversation_id: str, tenant: str | None) -> StoredConversation:
        """The conversation.

        Raises:
            GatewayError: NOT_FOUND when missing or owned by another tenant than `tenant` (None = any);
                DATA_LOSS when its summary does not decrypt.
        """
        query = select(conversations).where(conversations.c.conversation_id == conversation_id)
        if tenant is not None:
            query = query.where(conversations.c.tenant == tenant)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise resource_not_found("conversation", conversation_id)
        return self._row(row)

    async def list_conversations(
        self, tenant: str | None, *, page_size: int, page_token: str = "", filter_text: str = ""
    ) -> tuple[list[StoredConversation], str]:
        """One page of conversations, newest first, and the next page token ("" on the last page).

        Raises:
            GatewayError: INVALID_ARGUMENT for a bad `filter` or `page_token`.
        """
        digest = _digest(tenant, filter_text)
        query = select(conversations)
        if tenant is not None:
            query = query.where(conversations.c.tenant == tenant)
        condition = compile_filter(filter_text, FILTER_FIELDS, labels=conversations.c.labels)
        if condition is not None:
            query = query.where(condition)
        if page_token:
            created, last_id = _decode_token(page_token, digest)
            query = query.where(
                or_(
                    conversations.c.create_time_us < created,
                    and_(
                        conversations.c.create_time_us == created, conversations.c.conversation_id < last_id
                    ),
                )
            )
        query = query.order_by(conversations.c.create_time_us.desc(), conversations.c.conversation_id.desc())
        async with self._db.begin() as conn:
            rows = (await conn.execute(query.limit(page_size + 1))).all()
        found = [self._row(row, with_summary=False) for row in rows[:page_size]]
        more = len(rows) > page_size and found
        token = _encode_token(found[-1].create_time_us, found[-1].conversation_id, digest) if more else ""
        return found, token

    async def delete(self, conversation_id: str, tenant: str | None) -> None:
        """Delete the conversation and its messages (one transaction).

        Raises:
            GatewayError: NOT_FOUND as `get`.
        """
        owned = conversations.c.conversation_id == conversation_id
        if tenant is not None:
            owned = and_(owned, conversations.c.tenant == tenant)
        async with self._db.begin() as conn:
            found = (await conn.execute(select(conversations.c.tenant).where(owned))).first()
            if found is None:
                raise resource_not_found("conversation", conversation_id)
            await conn.execute(
                delete(conversation_messages).where(
                    conversation_messages.c.conversation_id == conversation_id,
                    conversation_messages.c.tenant == found.tenant,
                )
            )
            await conn.execute(delete(conversations).where(owned))

    async def messages(
        self, conversation: StoredConversation, *, start: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Decrypted messages from index `start` on (at most `limit`), oldest first.

        Raises:
            GatewayError: DATA_LOSS / DECRYPTION_FAILED for a row that does not authenticate.
        """
        query = (
            select(conversation_messages)
            .where(
                conversation_messages.c.conversation_id == conversation.conversation_id,
                conversation_messages.c.tenant == conversation.tenant,
                conversation_messages.c.idx >= start,
            )
            .order_by(conversation_messages.c.idx)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        result = []
        for row in rows:
            plain = self._keyring.decrypt(
                row.message, message_aad(conversation.tenant, conversation.conversation_id, row.idx)
            )
            result.append(
                StoredMessage(
                    row.idx, content_pb2.Message.FromString(plain), row.complete, row.create_time_us
                )
            )
        return result

    async def append(
        self, conversation: StoredConversation, items: Sequence[tuple[content_pb2.Message, bool]]
    ) -> int:
        """Append `(message, complete)` items atomically; returns the index of the first one.

        Raises:
            GatewayError: NOT_FOUND when the conversation was deleted meanwhile.
        """
        key = conversation.conversation_id
        async with self._db.begin() as conn:
            bumped = (
                await conn.execute(
                    update(conversations)
                    .where(
                        conversations.c.conversation_id == key, conversations.c.tenant == conversation.tenant
                    )
                    .values(
                        message_count=conversations.c.message_count + len(items),
                        update_time_us=now_us(),
                    )
                    .returning(conversations.c.message_count)
                )
            ).first()
            if bumped is None:
                raise resource_not_found("conversation", key)
            first = int(bumped.message_count) - len(items)
            if items:
                await conn.execute(
                    conversation_messages.insert(), self._message_rows(conversation.tenant, key, first, items)
                )
        return first

    async def set_summary(
        self, conversation: StoredConversation, summary: content_pb2.Message, upto: int
    ) -> None:
        """Store the summary of the messages before index `upto` (encrypted)."""
        sealed = self._keyring.encrypt(
            summary.SerializeToString(deterministic=True),
            summary_aad(conversation.tenant, conversation.conversation_id, upto),
        )
        async with self._db.begin() as conn:
            await conn.execute(
                update(conversations)
                .where(
                    conversations.c.conversation_id == conversation.conversation_id,
                    conversations.c.tenant == conversation.tenant,
                )
                .values(summary=sealed, summary_upto=upto)
            )
