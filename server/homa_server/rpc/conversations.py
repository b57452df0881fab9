"""Conversation RPCs of ChatService: Create, Get (messages paginated), List and DeleteConversation.

Contract:
    * A conversation belongs to the caller's tenant; its owner is the caller's subject. A conversation
      of another tenant answers NOT_FOUND (RESOURCE_NOT_FOUND), like a missing one, unless the caller
      holds `tenants:all`. Within a tenant, conversations are visible to every caller with `chat:read`
      (filter by `owner` to see one's own).
    * Validation failures are INVALID_ARGUMENT with a BadRequest field violation: empty or over-long
      ids, negative page sizes, foreign page tokens, unknown context policies, over-long titles,
      malformed labels, invalid initial messages. Page sizes default to 50 and are capped at 1000.
    * Contents are encrypted at rest by store/conversations.py; chat turns on a conversation are run by
      routing/conversation.py (ChatService.Complete / StreamComplete with `conversation_id`).
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any, Final

from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.auth.tenancy import current_principal, owning_tenant, visible_tenant
from homa_server.errors import invalid_field
from homa_server.store.conversations import ConversationStore, NewConversation
from homa_server.validation.chat import validate_chat_request

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 1000
MAX_ID: Final = 64
MAX_TITLE: Final = 512
MAX_MODEL: Final = 256
MAX_LABELS: Final = 64
MAX_LABEL_VALUE: Final = 256
MAX_INITIAL_MESSAGES: Final = 1000
_LABEL_KEY: Final = re.compile(r"[a-z][a-z0-9_.\-/]{0,62}")
_POLICIES: Final = frozenset(chat_pb2.ContextPolicy.values())


def _conversation_id(value: str) -> str:
    if not value:
        raise invalid_field("conversation_id", "required")
    if len(value) > MAX_ID:
        raise invalid_field("conversation_id", f"at most {MAX_ID} characters")
    return value


def page_size(value: int) -> int:
    """AIP-158 page size: default for 0, capped at the maximum; negative is INVALID_ARGUMENT."""
    if value < 0:
        raise invalid_field("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def _message_token(conversation_id: str, index: int) -> str:
    raw = json.dumps([conversation_id, index], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _message_start(conversation_id: str, token: str) -> int:
    if not token:
        return 0
    try:
        issued_for, index = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if issued_for != conversation_id or not isinstance(index, int) or index < 0:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid_field("page_token", "not a token returned by this API for this request") from None
    return index


def _check_new(conversation: chat_pb2.Conversation) -> None:
    if len(conversation.title) > MAX_TITLE:
        raise invalid_field("conversation.title", f"at most {MAX_TITLE} characters")
    if len(conversation.model) > MAX_MODEL:
        raise invalid_field("conversation.model", f"at most {MAX_MODEL} characters")
    if conversation.context_policy not in _POLICIES:
        raise invalid_field("conversation.context_policy", "unknown context policy")
    if len(conversation.labels) > MAX_LABELS:
        raise invalid_field("conversation.labels", f"at most {MAX_LABELS} labels")
    for key, value in conversation.labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise invalid_field(
                f"conversation.labels[{key!r}]", "keys are 1-63 of a-z 0-9 _ . - / starting with a letter"
            )
        if len(value) > MAX_LABEL_VALUE:
            raise invalid_field(
                f"conversation.labels[{key!r}]", f"values are at most {MAX_LABEL_VALUE} characters"
            )


class ConversationServicer:
    """Part of the ChatService servicer (rpc/registration.py serves each RPC from the first part
    defining it); see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._store: ConversationStore | None = None

    @property
    def store(self) -> ConversationStore:
        """The repository over the gateway's open storage (built on first use)."""
        if self._store is None:
            if self._gateway.keyring is None:
                raise RuntimeError("storage is not open")
            self._store = ConversationStore(self._gateway.db, self._gateway.keyring)
        return self._store

    async def CreateConversation(
        self, request: chat_pb2.CreateConversationRequest, context: Context
    ) -> chat_pb2.CreateConversationResponse:
        """Create a conversation in the caller's tenant, owned by the caller, with initial messages."""
        principal = current_principal()
        fields = request.conversation
        _check_new(fields)
        if len(request.messages) > MAX_INITIAL_MESSAGES:
            raise invalid_field("messages", f"at most {MAX_INITIAL_MESSAGES} initial messages")
        if request.messages:
            validate_chat_request(chat_pb2.CompleteRequest(messages=request.messages))
        if fields.model:
            self._gateway.resolver.resolve(fields.model)  # an unknown model fails now, not on the first turn
        created = await self.store.create(
            NewConversation(
                tenant=owning_tenant(principal),
                owner=principal.subject,
                title=fields.title,
                model=fields.model,
                labels=dict(fields.labels),
                context_policy=fields.context_policy,
            ),
            list(request.messages),
        )
        return chat_pb2.CreateConversationResponse(conversation=created.to_proto())

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Context
    ) -> chat_pb2.GetConversationResponse:
        """The conversation and one page of its messages, oldest first."""
        conversation_id = _conversation_id(request.conversation_id)
        size = page_size(request.page_size)
        start = _message_start(conversation_id, request.page_token)
        conversation = await self.store.get(conversation_id, visible_tenant(current_principal()))
        messages = await self.store.messages(conversation, start=start, limit=size + 1)
        response = chat_pb2.GetConversationResponse(conversation=conversation.to_proto())
        response.messages.extend(m.to_proto() for m in messages[:size])
        if len(messages) > size:
            response.next_page_token = _message_token(conversation_id, messages[size].index)
        return response

    async def ListConversations(
        self, request: chat_pb2.ListConversationsRequest, context: Context
    ) -> chat_pb2.ListConversationsResponse:
        """A page of the tenant's conversations, newest first, filtered (AIP-160)."""
        found, token = await self.store.list_conversations(
            visible_tenant(current_principal()),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
            filter_text=request.filter,
        )
        return chat_pb2.ListConversationsResponse(
            conversations=[c.to_proto() for c in found], next_page_token=token
        )

    async def DeleteConversation(
        self, request: chat_pb2.DeleteConversationRequest, context: Context
    ) -> chat_pb2.DeleteConversationResponse:
        """Delete the conversation and all its messages."""
        conversation_id = _conversation_id(request.conversation_id)
        await self.store.delete(conversation_id, visible_tenant(current_principal()))
        return chat_pb2.DeleteConversationResponse()
