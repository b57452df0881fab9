"""What calls give back besides the response message: call information and assembled streams.

`CallInfo` carries the gateway's per-call metadata (request id, provider, model, attempts,
overhead). `StreamAssembler` folds `StreamCompleteResponse` events into a `ChatResult`, the value
returned by `chat.collect()`. `Turn` is one assistant turn of a Converse stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_client.errors import INCOMPLETE_STREAM, InternalError

Metadata = tuple[tuple[str, str | bytes], ...]

REQUEST_ID_KEY = "homa-request-id"
PROVIDER_KEY = "homa-provider"
MODEL_KEY = "homa-model"
ATTEMPTS_KEY = "homa-attempts"
OVERHEAD_KEY = "homa-overhead-ms"


def _text(metadata: Metadata, key: str) -> str:
    for k, value in metadata:
        if k == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return ""


def _number(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Metadata of one finished call (successful or not).

    Attributes:
        request_id: the gateway request id (`homa-request-id`; the id the client sent when the
            gateway was never reached).
        code: final status code.
        provider: provider instance that served the call ("" when none did).
        model: model as sent to the provider.
        attempts: upstream attempts made, when reported.
        overhead_ms: gateway time not spent waiting on the provider, when reported.
        initial_metadata: raw initial metadata.
        trailing_metadata: raw trailing metadata.
    """

    request_id: str
    code: grpc.StatusCode
    provider: str = ""
    model: str = ""
    attempts: int | None = None
    overhead_ms: float | None = None
    initial_metadata: Metadata = ()
    trailing_metadata: Metadata = ()

    @classmethod
    def from_metadata(
        cls,
        sent_request_id: str,
        code: grpc.StatusCode,
        initial: Iterable[tuple[str, str | bytes]] | None,
        trailing: Iterable[tuple[str, str | bytes]] | None,
    ) -> CallInfo:
        """Decode the gateway's metadata keys; missing keys leave defaults."""
        initial_md: Metadata = tuple((k, v) for k, v in initial or ())
        trailing_md: Metadata = tuple((k, v) for k, v in trailing or ())
        attempts = _number(_text(trailing_md, ATTEMPTS_KEY))
        return cls(
            request_id=_text(initial_md, REQUEST_ID_KEY)
            or _text(trailing_md, REQUEST_ID_KEY)
            or sent_request_id,
            code=code,
            provider=_text(trailing_md, PROVIDER_KEY),
            model=_text(trailing_md, MODEL_KEY),
            attempts=int(attempts) if attempts is not None else None,
            overhead_ms=_number(_text(trailing_md, OVERHEAD_KEY)),
            initial_metadata=initial_md,
            trailing_metadata=trailing_md,
        )


def text_of(message: content_pb2.Message) -> str:
    """The concatenated text parts of a message (e.g. `CompleteResponse.message`)."""
    return "".join(part.text for part in message.parts if part.WhichOneof("kind") == "text")


def tool_calls_of(message: content_pb2.Message) -> list[content_pb2.ToolCall]:
    """The tool calls of a message, in order."""
    return [part.tool_call for part in message.parts if part.WhichOneof("kind") == "tool_call"]


@dataclass(slots=True)
class ChatResult:
    """A streamed completion, assembled (returned by `chat.collect()`).

    Attributes:
        id: completion id.
        text: the answer text.
        reasoning: reasoning text of all blocks, when the provider exposes it.
        reasoning_signature: the last reasoning block's opaque signature.
        reasoning_blocks: every reasoning block (text, signature, redacted) in order; `message()`
            sends them back as they came, which providers with signed thinking require.
        refusal: refusal text, when the model refused.
        tool_calls: complete tool calls, in order.
        usage: final (cumulative) usage.
        finish_reason: why the model stopped (`homa.type.v1.FinishReason` value).
        raw_finish_reason: the provider's own finish reason.
        route: which deployment served the stream.
        call: metadata of the call (request id, ...); set once the stream has ended.
    """

    id: str = ""
    text: str = ""
    reasoning: str = ""
    reasoning_signature: bytes = b""
    reasoning_blocks: list[content_pb2.Reasoning] = field(default_factory=list)
    refusal: str = ""
    tool_calls: list[content_pb2.ToolCall] = field(default_factory=list)
    usage: usage_pb2.Usage = field(default_factory=usage_pb2.Usage)
    finish_reason: usage_pb2.FinishReason.ValueType = usage_pb2.FINISH_REASON_UNSPECIFIED
    raw_finish_reason: str = ""
    route: usage_pb2.Route = field(default_factory=usage_pb2.Route)
    call: CallInfo | None = None

    @property
    def request_id(self) -> str:
        """The gateway request id ("" before the stream ended)."""
        return self.call.request_id if self.call is not None else ""

    @property
    def finish_reason_name(self) -> str:
        """The finish reason without its prefix, e.g. "STOP" or "TOOL_CALLS"."""
        return usage_pb2.FinishReason.Name(self.finish_reason).removeprefix("FINISH_REASON_")

    def message(self) -> content_pb2.Message:
        """The assistant message: reasoning (when any), text (when any), then tool calls.

        Append it to the history to continue the conversation.
        """
        message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
        if self.reasoning_blocks:
            for block in self.reasoning_blocks:
                message.parts.add(reasoning=block)
        elif self.reasoning or self.reasoning_signature:
            message.parts.add(
                reasoning=content_pb2.Reasoning(text=self.reasoning, signature=self.reasoning_signature)
            )
        if self.text:
            message.parts.add(text=self.text)
        for call in self.tool_calls:
            message.parts.add(tool_call=call)
        return message

    def to_complete_response(self) -> chat_pb2.CompleteResponse:
        """The same result as the unary `Complete` would have returned (without create_time)."""
        return chat_pb2.CompleteResponse(
            id=self.id,
            message=self.message(),
            finish_reason=self.finish_reason,
            raw_finish_reason=self.raw_finish_reason,
            usage=self.usage,
            route=self.route,
        )


class StreamAssembler:
    """Folds `StreamCompleteResponse` events into a `ChatResult`.

    Tool calls are taken from the complete `tool_call` events; when a stream only carried
    `tool_call_delta` fragments, they are joined by index instead.
    """

    def __init__(self) -> None:
        self.result = ChatResult()
        self.finished = False
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._blocks: dict[int, content_pb2.Reasoning] = {}
        self._refusal: list[str] = []
        self._fragments: dict[int, content_pb2.ToolCall] = {}

    def add(self, event: chat_pb2.StreamCompleteResponse) -> None:
        """Fold one event in."""
        kind = event.WhichOneof("event")
        result = self.result
        if kind == "delta":
            self._text.append(event.delta.text)
            self._reasoning.append(event.delta.reasoning)
            self._refusal.append(event.delta.refusal)
            delta = event.delta
            if delta.reasoning_signature:
                result.reasoning_signature = delta.reasoning_signature
            if delta.reasoning or delta.reasoning_signature or delta.reasoning_redacted:
                block = self._blocks.setdefault(delta.reasoning_index, content_pb2.Reasoning())
                block.text += delta.reasoning
                if delta.reasoning_signature:
                    block.signature = delta.reasoning_signature
                block.redacted = block.redacted or delta.reasoning_redacted
        elif kind == "tool_call_delta":
            fragment = event.tool_call_delta
            call = self._fragments.setdefault(fragment.index, content_pb2.ToolCall())
            call.id = call.id or fragment.id
            call.name = call.name or fragment.name
            call.arguments_json += fragment.arguments_json
        elif kind == "tool_call":
            result.tool_calls.append(event.tool_call)
        elif kind == "usage":
            result.usage.CopyFrom(event.usage)
        elif kind == "route":
            result.route.CopyFrom(event.route)
        elif kind == "finish":
            result.id = event.finish.id
            result.finish_reason = event.finish.reason
            result.raw_finish_reason = event.finish.raw_reason
            self.finished = True

    def finish(self, call: CallInfo | None = None) -> ChatResult:
        """The assembled result.

        Raises:
            InternalError: reason INCOMPLETE_STREAM when no `finish` event arrived (the stream
                contract guarantees one on every successful stream).
        """
        if not self.finished:
            raise InternalError(
                "the stream ended without a finish event",
                code=grpc.StatusCode.INTERNAL,
                reason=INCOMPLETE_STREAM,
                request_id=call.request_id if call is not None else "",
            )
        result = self.result
        result.text = "".join(self._text)
        result.reasoning = "".join(self._reasoning)
        result.reasoning_blocks = [self._blocks[i] for i in sorted(self._blocks)]
        result.refusal = "".join(self._refusal)
        if not result.tool_calls and self._fragments:
            result.tool_calls = [self._fragments[i] for i in sorted(self._fragments)]
        result.call = call
        return result


@dataclass(slots=True)
class Turn:
    """One assistant turn of a Converse stream.

    Attributes:
        message: the whole assistant message of the turn.
        finish_reason: why the model stopped; TOOL_CALLS means tool results are expected next.
        raw_finish_reason: the provider's own reason.
        usage: usage of this turn.
        route: which deployment served the turn.
        events: every event of the turn, in order (route, deltas, tool calls, turn_complete).
    """

    message: content_pb2.Message
    finish_reason: usage_pb2.FinishReason.ValueType
    raw_finish_reason: str
    usage: usage_pb2.Usage
    route: usage_pb2.Route
    events: list[chat_pb2.ConverseResponse] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The turn's answer text."""
        return text_of(self.message)

    @property
    def tool_calls(self) -> list[content_pb2.ToolCall]:
        """The turn's tool calls (answer them with `send_tool_results`)."""
        return tool_calls_of(self.message)


class TurnAssembler:
    """Collects the events of one Converse turn until `turn_complete`."""

    def __init__(self) -> None:
        self.events: list[chat_pb2.ConverseResponse] = []
        self.route = usage_pb2.Route()

    def add(self, event: chat_pb2.ConverseResponse) -> Turn | None:
        """Add an event; returns the finished `Turn` on `turn_complete`, else None."""
        self.events.append(event)
        kind = event.WhichOneof("event")
        if kind == "route":
            self.route.CopyFrom(event.route)
        elif kind == "turn_complete":
            done = event.turn_complete
            return Turn(
                message=done.message,
                finish_reason=done.reason,
                raw_finish_reason=done.raw_reason,
                usage=done.usage,
                route=self.route,
                events=self.events,
            )
        return None
