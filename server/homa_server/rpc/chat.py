"""ChatService servicer: gRPC in, transport-neutral dispatch below.

Conversation resources (Create/Get/List/DeleteConversation) are not defined here yet, so they answer
UNIMPLEMENTED through rpc/registration.py.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, invalid_field
from homa_server.observability.call_state import current_call
from homa_server.providers.base import CallContext, TokenCountingProvider
from homa_server.routing.chat import ChatDispatcher
from homa_server.routing.converse import converse
from homa_server.routing.resolver import ModelResolver
from homa_server.tokens import count_request_tokens

Context = aio.ServicerContext[Any, Any]


def _request_id() -> str:
    state = current_call.get()
    return state.request_id if state is not None else ""


class ChatServicer:
    """Implements homa.chat.v1.ChatService."""

    def __init__(self, dispatcher: ChatDispatcher, resolver: ModelResolver) -> None:
        self._dispatcher = dispatcher
        self._resolver = resolver

    async def Complete(
        self, request: chat_pb2.CompleteRequest, context: Context
    ) -> chat_pb2.CompleteResponse:
        return await self._dispatcher.complete(request, context.time_remaining(), _request_id())

    # The streaming methods return the dispatcher's generator itself (no relaying layer): the
    # interceptor iterates it and closes it with aclose() on cancel, which closes the upstream.

    def StreamComplete(
        self, request: chat_pb2.StreamCompleteRequest, context: Context
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        # The two request messages are wire-identical by contract (tests/unit/test_contracts.py).
        same = chat_pb2.CompleteRequest.FromString(request.SerializeToString())
        return self._dispatcher.stream(same, context.time_remaining(), _request_id())

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
