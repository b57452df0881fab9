"""The Converse loop: one bidirectional stream carrying a whole multi-turn conversation.

Protocol (client → server): `start` first and only first; then `message` (a user turn) or
`tool_results` (answers to every tool call of the previous assistant turn). After each input the
server streams one assistant turn (route, deltas, tool calls) closed by `turn_complete`. A turn that
ends with TOOL_CALLS must be answered with `tool_results` before another `message`. History is kept
for the life of the stream. Violations are INVALID_ARGUMENT and end the stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import invalid_field, not_implemented
from homa_server.routing.chat import ChatDispatcher


class TurnAssembler:
    """Builds the whole assistant message of a turn from its stream events."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: dict[int, content_pb2.Reasoning] = {}  # by ContentDelta.reasoning_index
        self.tool_calls: list[content_pb2.ToolCall] = []
        self.usage = usage_pb2.Usage()
        self.finish = chat_pb2.Finish()

    def add(self, event: chat_pb2.StreamCompleteResponse) -> None:
        """Fold one event into the turn."""
        kind = event.WhichOneof("event")
        if kind == "delta":
            delta = event.delta
            self.text.append(delta.text)
            if delta.reasoning or delta.reasoning_signature or delta.reasoning_redacted:
                block = self.reasoning.setdefault(delta.reasoning_index, content_pb2.Reasoning())
                block.text += delta.reasoning
                if delta.reasoning_signature:
                    block.signature = delta.reasoning_signature
                block.redacted = block.redacted or delta.reasoning_redacted
        elif kind == "tool_call":
            self.tool_calls.append(event.tool_call)
        elif kind == "usage":
            self.usage.CopyFrom(event.usage)
        elif kind == "finish":
            self.finish.CopyFrom(event.finish)

    def message(self) -> content_pb2.Message:
        """The assistant message: reasoning blocks in order, text (when any), then tool calls."""
        message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
        for index in sorted(self.reasoning):
            message.parts.add(reasoning=self.reasoning[index])
        text = "".join(self.text)
        if text:
            message.parts.add(text=text)
        for call in self.tool_calls:
            message.parts.add(tool_call=call)
        return message


_RELAYED = {"route", "delta", "tool_call_delta", "tool_call"}


class ConverseSession:
    """State of one Converse stream."""

    def __init__(self, dispatcher: ChatDispatcher, start: chat_pb2.ConverseStart) -> None:
        if start.conversation_id:
            raise not_implemented("server-side conversations (ConverseStart.conversation_id)")
        self._dispatcher = dispatcher
        self._base = chat_pb2.CompleteRequest(model=start.model, tool_choice=start.tool_choice)
        self._base.tools.extend(start.tools)
        if start.HasField("max_output_tokens"):
            self._base.max_output_tokens = start.max_output_tokens
        if start.HasField("temperature"):
            self._base.temperature = start.temperature
        self._history = list(start.messages)
        self._pending: set[str] = set()

    def accept(self, item: chat_pb2.ConverseRequest, index: int) -> None:
        """Add a client input to the history, checking the protocol."""
        kind = item.WhichOneof("input")
        where = f"requests[{index}]"
        if kind == "message":
            if self._pending:
                raise invalid_field(f"{where}.message", "tool_results expected for the pending tool calls")
            if item.message.role not in (content_pb2.ROLE_USER, content_pb2.ROLE_UNSPECIFIED):
                raise invalid_field(f"{where}.message.role", "only user turns may be sent")
            turn = content_pb2.Message()
            turn.CopyFrom(item.message)
            turn.role = content_pb2.ROLE_USER
            self._history.append(turn)
        elif kind == "tool_results":
            answered = {r.tool_call_id for r in item.tool_results.results}
            if not self._pending or answered != self._pending:
                raise invalid_field(
                    f"{where}.tool_results", "must answer exactly the tool calls of the last turn"
                )
            self._history.append(
                content_pb2.Message(
                    role=content_pb2.ROLE_TOOL,
                    parts=[content_pb2.Part(tool_result=r) for r in item.tool_results.results],
                )
            )
            self._pending = set()
        else:
            raise invalid_field(f"{where}.start", "start is only allowed as the first message")

    async def turn(
        self, remaining: float | None, request_id: str
    ) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
        """Run one assistant turn over the history and relay its events."""
        request = chat_pb2.CompleteRequest()
        request.CopyFrom(self._base)
        request.messages.extend(self._history)
        assembler = TurnAssembler()
        # aclosing: a client cancel closes the turn's stream (and records its usage) at once.
        async with aclosing(self._dispatcher.stream(request, remaining, request_id)) as events:
            async for event in events:
                assembler.add(event)
                kind = event.WhichOneof("event")
                if kind in _RELAYED:
                    response = chat_pb2.ConverseResponse()
                    getattr(response, kind).CopyFrom(getattr(event, kind))
                    yield response
        message = assembler.message()
        self._history.append(message)
        self._pending = {call.id for call in assembler.tool_calls}
        yield chat_pb2.ConverseResponse(
            turn_complete=chat_pb2.TurnComplete(
                reason=assembler.finish.reason,
                raw_reason=assembler.finish.raw_reason,
                message=message,
                usage=assembler.usage,
            )
        )


async def converse(
    dispatcher: ChatDispatcher,
    requests: AsyncIterator[chat_pb2.ConverseRequest],
    time_remaining: Callable[[], float | None],
    request_id: str = "",
) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
    """Drive a Converse stream; see the module docstring.

    Args:
        dispatcher: runs each turn.
        requests: the client's messages.
        time_remaining: seconds left before the stream's deadline, asked before each turn.
        request_id: gateway request id.
    """
    first = await anext(requests, None)
    if first is None:
        return
    if first.WhichOneof("input") != "start":
        raise invalid_field("requests[0].start", "the first message must be start")
    session = ConverseSession(dispatcher, first.start)
    index = 1
    async for item in requests:
        session.accept(item, index)
        index += 1
        async with aclosing(session.turn(time_remaining(), request_id)) as turn:
            async for response in turn:
                yield response
