"""Streamed completions: iterators over `StreamCompleteResponse` events that own their RPC.

`AsyncChatStream` (async iterator) and `ChatStream` (iterator) convert every failure into a
`HomaError`, record the call's `CallInfo` when the stream ends, and cancel the RPC when closed
(`aclose()`/`close()`, leaving an `async with`/`with` block, or a `cancel()`). A stream that is
simply dropped is cancelled by gRPC when garbage-collected; close it to cancel at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

import grpc
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_client.errors import from_rpc_error
from homa_client.results import CallInfo

Recorder = Callable[[CallInfo], CallInfo]
ErrorRecorder = Callable[[grpc.RpcError, str], CallInfo]

StreamEvent = chat_pb2.StreamCompleteResponse


class AsyncChatStream:
    """The events of one `StreamComplete` call, as an async iterator.

    Attributes:
        call_info: metadata of the call once the stream has ended (successfully or not).
    """

    def __init__(
        self,
        call: aio.UnaryStreamCall[chat_pb2.StreamCompleteRequest, StreamEvent],
        request_id: str,
        record: Recorder,
        record_error: ErrorRecorder,
    ) -> None:
        self._call = call
        self._sent_id = request_id
        self._record = record
        self._record_error = record_error
        self._done = False
        self.call_info: CallInfo | None = None

    @property
    def request_id(self) -> str:
        """The gateway request id (the id sent, until the gateway's answer is known)."""
        return self.call_info.request_id if self.call_info is not None else self._sent_id

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        """The next event.

        Raises:
            StopAsyncIteration: the stream ended with status OK (or was closed).
            HomaError: the call failed; events already received stay valid.
        """
        if self._done:
            raise StopAsyncIteration
        try:
            event = await self._call.read()
        except grpc.RpcError as exc:
            self._done = True
            self.call_info = self._record_error(exc, self._sent_id)
            raise from_rpc_error(exc, self._sent_id) from exc
        except asyncio.CancelledError:
            # The consuming task was cancelled: stop the RPC too, then let the cancellation through.
            self._done = True
            self._call.cancel()
            raise
        if isinstance(event, StreamEvent):
            return event
        self._done = True  # EOF: status OK
        self.call_info = self._record(
            CallInfo.from_metadata(
                self._sent_id,
                await self._call.code(),
                await self._call.initial_metadata(),
                await self._call.trailing_metadata(),
            )
        )
        raise StopAsyncIteration

    def cancel(self) -> None:
        """Cancel the RPC now (no effect once it has finished)."""
        self._done = True
        self._call.cancel()

    async def aclose(self) -> None:
        """Stop iterating; cancels the RPC when it is still running."""
        if not self._done:
            self.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ChatStream:
    """The events of one `StreamComplete` call, as an iterator (synchronous client).

    Attributes:
        call_info: metadata of the call once the stream has ended (successfully or not).
    """

    def __init__(
        self,
        call: grpc.CallIterator[StreamEvent],
        request_id: str,
        record: Recorder,
        record_error: ErrorRecorder,
    ) -> None:
        self._call = call
        self._events: Iterator[StreamEvent] = iter(call)
        self._sent_id = request_id
        self._record = record
        self._record_error = record_error
        self._done = False
        self.call_info: CallInfo | None = None

    @property
    def request_id(self) -> str:
        """The gateway request id (the id sent, until the gateway's answer is known)."""
        return self.call_info.request_id if self.call_info is not None else self._sent_id

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> StreamEvent:
        """The next event.

        Raises:
            StopIteration: the stream ended with status OK (or was closed).
            HomaError: the call failed; events already received stay valid.
        """
        if self._done:
            raise StopIteration
        try:
            return next(self._events)
        except StopIteration:
            self._done = True
            self.call_info = self._record(
                CallInfo.from_metadata(
                    self._sent_id,
                    self._call.code(),
                    self._call.initial_metadata(),
                    self._call.trailing_metadata(),
                )
            )
            raise
        except grpc.RpcError as exc:
            self._done = True
            self.call_info = self._record_error(exc, self._sent_id)
            raise from_rpc_error(exc, self._sent_id) from exc

    def cancel(self) -> None:
        """Cancel the RPC now (no effect once it has finished)."""
        self._done = True
        cancel: Callable[[], object] = self._call.cancel  # untyped in grpc-stubs
        cancel()

    def close(self) -> None:
        """Stop iterating; cancels the RPC when it is still running."""
        if not self._done:
            self.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
