"""Helpers for the bidirectional `Converse` stream: send a turn, get the assistant's `Turn` back.

Protocol (enforced by the gateway): the settings (`ConverseStart`) go first, then user turns
and, after a turn that ended with TOOL_CALLS, the results of exactly those tool calls. The gateway
keeps the history for the life of the stream.

    async with client.chat.converse(ChatRequestBuilder("mock/tool").tool(...)) as conversation:
        turn = await conversation.send("Weather in Paris?")
        if turn.tool_calls:
            turn = await conversation.send_tool_results({turn.tool_calls[0].id: {"temp_c": 21}})

Leaving the block ends the stream gracefully (half-close, then wait for the gateway's status); an
exception inside it, `cancel()`, or the task being cancelled cancels the RPC instead.
"""

from __future__ import annotations

import asyncio
import queue
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import NoReturn, Self

import grpc
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_client import coercion
from homa_client.errors import INCOMPLETE_STREAM, InternalError, from_rpc_error
from homa_client.results import CallInfo, Turn, TurnAssembler
from homa_client.streams import ErrorRecorder, Recorder

EventCallback = Callable[[chat_pb2.ConverseResponse], None]

_END = None  # sentinel closing the sync request queue


def _drain(
    requests: queue.SimpleQueue[chat_pb2.ConverseRequest | None],
) -> Iterator[chat_pb2.ConverseRequest]:
    """The request stream of a sync Converse call, consumed by gRPC on its own thread.

    It ends (half-closing the call) at the sentinel. It must not reference the `Conversation`, so
    that a dropped conversation is collected and its finalizer can post the sentinel.
    """
    while (item := requests.get()) is not _END:
        yield item


def _incomplete(request_id: str) -> InternalError:
    return InternalError(
        "the Converse stream ended before the turn completed",
        code=grpc.StatusCode.INTERNAL,
        reason=INCOMPLETE_STREAM,
        request_id=request_id,
    )


class AsyncConversation:
    """One `Converse` stream (async client).

    Attributes:
        turns: every completed assistant turn, in order.
        call_info: metadata of the call once the stream has ended.
    """

    def __init__(
        self,
        call: aio.StreamStreamCall[chat_pb2.ConverseRequest, chat_pb2.ConverseResponse],
        start: chat_pb2.ConverseStart,
        request_id: str,
        record: Recorder,
        record_error: ErrorRecorder,
    ) -> None:
        self._call = call
        self._start: chat_pb2.ConverseStart | None = start
        self._sent_id = request_id
        self._record = record
        self._record_error = record_error
        self._closed = False
        self.turns: list[Turn] = []
        self.call_info: CallInfo | None = None

    @property
    def request_id(self) -> str:
        """The gateway request id of the stream."""
        return self.call_info.request_id if self.call_info is not None else self._sent_id

    async def send(self, message: coercion.UserTurnInput, *, on_event: EventCallback | None = None) -> Turn:
        """Send a user turn (text or a user `Message`) and wait for the whole assistant turn.

        Args:
            message: the user's turn.
            on_event: called with every event of the turn as it arrives (e.g. to print deltas).

        Raises:
            HomaError: the stream failed (it is over; start a new conversation).
        """
        await self._write(coercion.user_turn(message))
        return await self._read_turn(on_event)

    async def send_tool_results(
        self, results: coercion.ToolResultsInput, *, on_event: EventCallback | None = None
    ) -> Turn:
        """Answer the tool calls of the last turn; returns the next turn.

        Args:
            results: `ToolResult`s, or {tool call id: content} (non-string content sent as JSON).
            on_event: called with every event of the turn as it arrives.
        """
        await self._write(coercion.tool_results(results))
        return await self._read_turn(on_event)

    def _fail(self, exc: grpc.RpcError) -> NoReturn:
        self._closed = True
        self.call_info = self._record_error(exc, self._sent_id)
        raise from_rpc_error(exc, self._sent_id) from exc

    async def _write(self, request: chat_pb2.ConverseRequest | None) -> None:
        """Send `request` (after the pending start message); None half-closes the stream."""
        if self._closed:
            raise RuntimeError("the conversation is closed")
        try:
            if self._start is not None:
                await self._call.write(chat_pb2.ConverseRequest(start=self._start))
                self._start = None
            if request is None:
                await self._call.done_writing()
            else:
                await self._call.write(request)
        except grpc.RpcError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def _read(self) -> chat_pb2.ConverseResponse | None:
        try:
            event = await self._call.read()
        except grpc.RpcError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self.cancel()
            raise
        return event if isinstance(event, chat_pb2.ConverseResponse) else None

    async def _read_turn(self, on_event: EventCallback | None) -> Turn:
        assembler = TurnAssembler()
        while True:
            event = await self._read()
            if event is None:
                await self._finish()
                raise _incomplete(self.request_id)
            if on_event is not None:
                on_event(event)
            turn = assembler.add(event)
            if turn is not None:
                self.turns.append(turn)
                return turn

    async def _finish(self) -> None:
        self._closed = True
        self.call_info = self._record(
            CallInfo.from_metadata(
                self._sent_id,
                await self._call.code(),
                await self._call.initial_metadata(),
                await self._call.trailing_metadata(),
            )
        )

    async def aclose(self) -> None:
        """End the stream gracefully: half-close, then wait for the gateway's final status.

        Raises:
            HomaError: the gateway ended the stream with an error.
        """
        if self._closed:
            return
        await self._write(None)
        while await self._read() is not None:
            pass
        await self._finish()

    def cancel(self) -> None:
        """Cancel the stream at once (no effect once it has finished)."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.aclose()
        else:
            self.cancel()


class Conversation:
    """One `Converse` stream (synchronous client); same interface as `AsyncConversation`."""

    def __init__(
        self,
        open_call: Callable[
            [Iterator[chat_pb2.ConverseRequest]], grpc.CallIterator[chat_pb2.ConverseResponse]
        ],
        start: chat_pb2.ConverseStart,
        request_id: str,
        record: Recorder,
        record_error: ErrorRecorder,
    ) -> None:
        self._requests: queue.SimpleQueue[chat_pb2.ConverseRequest | None] = queue.SimpleQueue()
        self._requests.put(chat_pb2.ConverseRequest(start=start))
        self._call = open_call(_drain(self._requests))
        # A conversation dropped without close() must still release gRPC's request thread.
        weakref.finalize(self, self._requests.put, _END)
        self._events: Iterator[chat_pb2.ConverseResponse] = iter(self._call)
        self._sent_id = request_id
        self._record = record
        self._record_error = record_error
        self._closed = False
        self.turns: list[Turn] = []
        self.call_info: CallInfo | None = None

    @property
    def request_id(self) -> str:
        """The gateway request id of the stream."""
        return self.call_info.request_id if self.call_info is not None else self._sent_id

    def send(self, message: coercion.UserTurnInput, *, on_event: EventCallback | None = None) -> Turn:
        """Send a user turn and wait for the whole assistant turn; see `AsyncConversation.send`."""
        self._write(coercion.user_turn(message))
        return self._read_turn(on_event)

    def send_tool_results(
        self, results: coercion.ToolResultsInput, *, on_event: EventCallback | None = None
    ) -> Turn:
        """Answer the tool calls of the last turn; returns the next turn."""
        self._write(coercion.tool_results(results))
        return self._read_turn(on_event)

    def _write(self, request: chat_pb2.ConverseRequest) -> None:
        if self._closed:
            raise RuntimeError("the conversation is closed")
        self._requests.put(request)

    def _read(self) -> chat_pb2.ConverseResponse | None:
        try:
            return next(self._events)
        except StopIteration:
            self._closed = True
            self._requests.put(_END)
            self.call_info = self._record(
                CallInfo.from_metadata(
                    self._sent_id,
                    self._call.code(),
                    self._call.initial_metadata(),
                    self._call.trailing_metadata(),
                )
            )
            return None
        except grpc.RpcError as exc:
            self._closed = True
            self._requests.put(_END)
            self.call_info = self._record_error(exc, self._sent_id)
            raise from_rpc_error(exc, self._sent_id) from exc

    def _read_turn(self, on_event: EventCallback | None) -> Turn:
        assembler = TurnAssembler()
        while True:
            event = self._read()
            if event is None:
                raise _incomplete(self.request_id)
            if on_event is not None:
                on_event(event)
            turn = assembler.add(event)
            if turn is not None:
                self.turns.append(turn)
                return turn

    def close(self) -> None:
        """End the stream gracefully: half-close, then wait for the gateway's final status.

        Raises:
            HomaError: the gateway ended the stream with an error.
        """
        if self._closed:
            return
        self._requests.put(_END)
        while self._read() is not None:
            pass

    def cancel(self) -> None:
        """Cancel the stream at once (no effect once it has finished)."""
        self._closed = True
        self._requests.put(_END)
        cancel: Callable[[], object] = self._call.cancel  # untyped in grpc-stubs
        cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.cancel()
