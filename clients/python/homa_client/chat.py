"""The `client.chat` namespace: ChatService calls for the async and the sync client.

Every method takes, besides its request, the keywords of `CallOptions`:
    timeout: deadline in seconds for this call (default: the client's `timeout`; None = none).
        It is the gRPC deadline, so the gateway stops the upstream call when it passes.
    request_id: the id sent as `x-request-id` (default: a fresh random id).
    metadata: extra gRPC metadata for this call.
Every failure raises a `HomaError` subclass (see `homa_client.errors`).
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline, propagated to the gateway (see unary.py)

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import grpc
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa_client import coercion
from homa_client.conversation import AsyncConversation, Conversation
from homa_client.invocation import CallOptions, CallSettings, DeferredCall, MetadataInput, PreparedCall
from homa_client.results import ChatResult, StreamAssembler
from homa_client.streams import AsyncChatStream, ChatStream
from homa_client.unary import call_async, call_sync


class AsyncChat:
    """ChatService calls of `AsyncHomaClient` (use `client.chat`)."""

    def __init__(self, stub: Callable[[], chat_grpc.ChatServiceAsyncStub], settings: CallSettings) -> None:
        self._get_stub = stub  # the channel is opened lazily, on the loop of the first call
        self._settings = settings

    @property
    def _stub(self) -> chat_grpc.ChatServiceAsyncStub:
        return self._get_stub()

    def _open(self, method: Callable[..., object], request: object, prepared: PreparedCall) -> object:
        """Start a streaming RPC now, or, with a token provider, at first use once the token is ready
        (stream() and converse() are not coroutines, so they cannot wait for the token)."""
        if self._settings.token_provider is None:
            return method(request, timeout=prepared.timeout, metadata=prepared.metadata)

        async def open_call() -> object:
            ready = await self._settings.authorize_async(prepared)
            return method(request, timeout=ready.timeout, metadata=ready.metadata)

        return DeferredCall(open_call)

    async def complete(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> chat_pb2.CompleteResponse:
        """One whole completion (`Complete`); `request` is a request message or a builder."""
        options = CallOptions(timeout, request_id, metadata)
        return await call_async(
            self._settings, self._stub.Complete, coercion.complete_request(request), options
        )

    def stream(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> AsyncChatStream:
        """Start a streamed completion (`StreamComplete`); iterate the returned stream for its events.

        The RPC starts at once (with a `token_provider`: at the first read, once the token is
        ready). Closing the stream (`aclose()`, leaving `async with`) cancels it.
        """
        prepared = self._settings.prepare(CallOptions(timeout, request_id, metadata))
        call = cast(
            "aio.UnaryStreamCall[chat_pb2.StreamCompleteRequest, chat_pb2.StreamCompleteResponse]",
            self._open(self._stub.StreamComplete, coercion.stream_request(request), prepared),
        )
        return AsyncChatStream(call, prepared.request_id, self._settings.record, self._settings.record_error)

    async def collect(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> ChatResult:
        """Stream a completion and return it assembled (text, tool calls, usage, finish reason).

        Raises:
            HomaError: the stream failed, including part-way (e.g. UnavailableError with reason
                UPSTREAM_STREAM_INTERRUPTED).
        """
        assembler = StreamAssembler()
        async with self.stream(request, timeout=timeout, request_id=request_id, metadata=metadata) as events:
            async for event in events:
                assembler.add(event)
        return assembler.finish(events.call_info)

    async def count_tokens(
        self,
        request: coercion.CountTokensInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> chat_pb2.CountTokensResponse:
        """Count the input tokens of a request (`CountTokens`); chat requests and builders are accepted."""
        options = CallOptions(timeout, request_id, metadata)
        return await call_async(
            self._settings, self._stub.CountTokens, coercion.count_tokens_request(request), options
        )

    def converse(
        self,
        start: coercion.ConverseStartInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> AsyncConversation:
        """Open a `Converse` stream: `start` is a model name, a builder or a `ConverseStart`.

        The deadline (`timeout`) covers the whole conversation. With a `token_provider` the RPC
        starts at the first `send`, once the token is ready.
        """
        prepared = self._settings.prepare(CallOptions(timeout, request_id, metadata))
        call = cast(
            "aio.StreamStreamCall[chat_pb2.ConverseRequest, chat_pb2.ConverseResponse]",
            self._open(self._stub.Converse, None, prepared),
        )
        return AsyncConversation(
            call,
            coercion.converse_start(start),
            prepared.request_id,
            self._settings.record,
            self._settings.record_error,
        )


class Chat:
    """ChatService calls of `HomaClient` (use `client.chat`); same methods as `AsyncChat`."""

    def __init__(self, stub: chat_grpc.ChatServiceStub, settings: CallSettings) -> None:
        self._stub = stub
        self._settings = settings

    def complete(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> chat_pb2.CompleteResponse:
        """One whole completion (`Complete`); `request` is a request message or a builder."""
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(self._settings, self._stub.Complete, coercion.complete_request(request), options)

    def stream(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> ChatStream:
        """Start a streamed completion; iterate the returned stream. `close()`/`with` cancels it."""
        prepared = self._settings.prepare_sync(CallOptions(timeout, request_id, metadata))
        call = self._stub.StreamComplete(
            coercion.stream_request(request), timeout=prepared.timeout, metadata=prepared.metadata
        )
        return ChatStream(call, prepared.request_id, self._settings.record, self._settings.record_error)

    def collect(
        self,
        request: coercion.ChatRequestInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> ChatResult:
        """Stream a completion and return it assembled; see `AsyncChat.collect`."""
        assembler = StreamAssembler()
        with self.stream(request, timeout=timeout, request_id=request_id, metadata=metadata) as events:
            for event in events:
                assembler.add(event)
        return assembler.finish(events.call_info)

    def count_tokens(
        self,
        request: coercion.CountTokensInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> chat_pb2.CountTokensResponse:
        """Count the input tokens of a request (`CountTokens`)."""
        options = CallOptions(timeout, request_id, metadata)
        return call_sync(
            self._settings, self._stub.CountTokens, coercion.count_tokens_request(request), options
        )

    def converse(
        self,
        start: coercion.ConverseStartInput,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        metadata: MetadataInput | None = None,
    ) -> Conversation:
        """Open a `Converse` stream; see `AsyncChat.converse`."""
        prepared = self._settings.prepare_sync(CallOptions(timeout, request_id, metadata))

        def open_call(
            requests: Iterator[chat_pb2.ConverseRequest],
        ) -> grpc.CallIterator[chat_pb2.ConverseResponse]:
            return self._stub.Converse(requests, timeout=prepared.timeout, metadata=prepared.metadata)

        return Conversation(
            open_call,
            coercion.converse_start(start),
            prepared.request_id,
            self._settings.record,
            self._settings.record_error,
        )
