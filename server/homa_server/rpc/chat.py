"""ChatService servicer: gRPC in, transport-neutral dispatch below.

Complete and StreamComplete requests naming a `conversation_id` run through the conversation layer
(routing/conversation.py: history, context policy, atomic append); without one they go straight to the
dispatcher. Converse does not take server-side conversations (UNIMPLEMENTED for
`ConverseStart.conversation_id`). The conversation resources (Create/Get/List/DeleteConversation) are
served by the other ChatService part, rpc/conversations.py.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, invalid_field, not_implemented
from homa_server.observability.call_state import current_call
from homa_server.providers.base import CallContext, TokenCountingProvider
from homa_server.routing.chat import ChatDispatcher
from homa_server.routing.conversation import ConversationTurns
from homa_server.routing.converse import converse
from homa_server.routing.resolver import ModelResolver
from homa_server.tokens import count_request_tokens

Context = aio.ServicerContext[Any, Any]


def _request_id() -> str:
    state = current_call.get()
    return state.request_id if state is not None else ""


class ChatServicer:
    """Implements homa.chat.v1.ChatService (chat part).

    Args:
        dispatcher: runs the calls.
        resolver: model names to providers (CountTokens).
        conversations: the conversation layer; None (no storage) answers UNIMPLEMENTED for requests
            naming a conversation.
    """

    def __init__(
        self,
        dispatcher: ChatDispatcher,
        resolver: ModelResolver,
        conversations: ConversationTurns | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._resolver = resolver
        self._conversations = conversations

    def _turns(self) -> ConversationTurns:
        if self._conversations is None:
            raise not_implemented("server-side conversations (no storage configured)")
        return self._conversations

    async def Complete(
        self, request: chat_pb2.CompleteRequest, context: Context
    ) -> chat_pb2.CompleteResponse:
        if request.conversation_id:
            return await self._turns().complete(request, context.time_remaining(), _request_id())
        return await self._dispatcher.complete(request, context.time_remaining(), _request_id(), cached=True)

    # The streaming methods return the dispatcher's generator itself (no relaying layer): the
    # interceptor iterates it and closes it with aclose() on cancel, which closes the upstream.

    def StreamComplete(
        self, request: chat_pb2.StreamCompleteRequest, context: Context
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        # The two request messages are wire-identical by contract (tests/unit/test_contracts.py).
        same = chat_pb2.CompleteRequest.FromString(request.SerializeToString())
        if same.conversation_id:
            return self._turns().stream(same, context.time_remaining(), _request_id())
        return self._dispatcher.stream(same, context.time_remaining(), _request_id(), cached=True)

    def Converse(
        self, requests: AsyncIterator[chat_pb2.ConverseRequest], context: Context
    ) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
        return converse(self._dispatcher, requests, context.time_remaining, _request_id())

    async def CountTokens(
        self, request: chat_pb2.CountTokensRequest, context: Context
    ) -> chat_pb2.CountTokensResponse:
        if not request.messages:
            raise invalid_field("messages", "at least one message is required")
        target = self._resolver.resolve(request.model)
        provider = target.provider
        if isinstance(provider, TokenCountingProvider):
            ctx = CallContext(model=target.model, request_id=_request_id())
            try:
                return await provider.count_tokens(request, ctx)
            except GatewayError as exc:
                # An OpenAI-compatible server without the counting endpoint answers 404: count
                # locally instead. Every other failure is the caller's to see.
                if exc.code not in (Code.NOT_FOUND, Code.UNIMPLEMENTED):
                    raise
        return count_request_tokens(request, target.model)
