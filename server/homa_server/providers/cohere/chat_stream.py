"""Cohere v2 stream events (`StreamedChatResponseV2`) -> homa `StreamCompleteResponse` events.

`CohereStreamDecoder` is a pure state machine over SSE `data` payloads (no I/O). It keys on the
payload's `type` (the SSE `event:` line carries the same name and is not needed). Per event:

| Cohere event       | homa events                                                              |
|--------------------|--------------------------------------------------------------------------|
| message-start      | none (the id is kept for `finish`)                                       |
| content-start      | none, or a delta when it already carries text (records the block kind)   |
| content-delta      | `delta.text` (`content.text`) or `delta.reasoning` (`content.thinking`)  |
| tool-plan-delta    | `delta.reasoning` (the plan is the model's reasoning about tool use)     |
| tool-call-start    | `tool_call_delta` with index, id, name (and any first arguments)         |
| tool-call-delta    | `tool_call_delta` with the arguments fragment                            |
| tool-call-end      | the whole `tool_call` (arguments joined)                                 |
| citation-start     | one `citation` per source                                                |
| message-end        | `usage`, then `finish`; ERROR / TIMEOUT set `failure` instead of finish  |
| content-end, citation-end, debug, unknown types | none (unknown types: forward compatibility) |

When the tool plan is over (at the first tool call, content block or message end) one delta with
`reasoning_signature = TOOL_PLAN_SIGNATURE` follows, so a client that accumulates the reasoning
keeps the marker that sends it back as `tool_plan`. Tool calls that never saw their
`tool-call-end` are emitted at message-end. A payload without `type` but with a `message` is an
error object and raises the mapped error; malformed JSON or a wrong shape raises
UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.cohere.error_mapping import CohereErrors
from homa_server.providers.cohere.result_mapping import (
    FINISH_FAILURES,
    FINISH_REASONS,
    TOOL_PLAN_SIGNATURE,
    citations_from,
    usage_from,
)

__all__ = ["CohereStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []

    def whole(self) -> _Event:
        return _Event(
            tool_call=content_pb2.ToolCall(id=self.id, name=self.name, arguments_json="".join(self.arguments))
        )


class CohereStreamDecoder:
    """Decodes one streamed chat. Use one instance per stream.

    Attributes:
        finished: message-end was seen (the stream's terminator).
        failure: set with `finished` when message-end reported ERROR or TIMEOUT; the caller raises
            it after yielding the events returned with it (usage).
    """

    __slots__ = (
        "_answer_length",
        "_blocks",
        "_calls",
        "_errors",
        "_id",
        "_model",
        "_next_call",
        "_plan_open",
        "failure",
        "finished",
    )

    def __init__(self, model: str, errors: CohereErrors) -> None:
        self._model = model
        self._errors = errors
        self._id = ""
        self._calls: dict[int, _PendingCall] = {}
        self._next_call = 0
        self._blocks: dict[int, int | None] = {}  # content index -> answer offset (None: thinking)
        self._answer_length = 0
        self._plan_open = False
        self.finished = False
        self.failure: GatewayError | None = None

    def feed(self, data: bytes) -> list[_Event]:
        """Events for one SSE `data` payload (not `[DONE]`).

        Raises:
            GatewayError: a mapped error object, or UPSTREAM_PROTOCOL_ERROR.
        """
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._errors.protocol("malformed JSON in a stream event") from None
        if not isinstance(event, dict):
            raise self._errors.protocol("a stream event is not a JSON object")
        kind = event.get("type")
        if not isinstance(kind, str):
            if isinstance(event.get("message"), str):
                raise self._errors.from_stream_payload(self._model, event)
            raise self._errors.protocol("a stream event has no type")
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # debug, content-end, citation-end, and types newer than this adapter
        try:
            return handler(self, event)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._errors.protocol(f"unexpected {kind} event shape ({type(exc).__name__})") from None

    # -- handlers (one per event type) -------------------------------------------------------

    def _message_start(self, event: dict[str, Any]) -> list[_Event]:
        self._id = event.get("id") or ""
        return []

    def _content_start(self, event: dict[str, Any]) -> list[_Event]:
        events = self._close_plan()
        content = event["delta"]["message"]["content"]
        thinking = content.get("type") == "thinking"
        self._blocks[event.get("index") or 0] = None if thinking else self._answer_length
        events.extend(self._content(content))
        return events

    def _content_delta(self, event: dict[str, Any]) -> list[_Event]:
        return self._content(event["delta"]["message"]["content"])

    def _tool_plan_delta(self, event: dict[str, Any]) -> list[_Event]:
        plan = event["delta"]["message"]["tool_plan"]
        if not plan:
            return []
        self._plan_open = True
        return [_Event(delta=chat_pb2.ContentDelta(reasoning=plan, reasoning_index=_PLAN_INDEX))]

    def _tool_call_start(self, event: dict[str, Any]) -> list[_Event]:
        events = self._close_plan()
        call = event["delta"]["message"]["tool_calls"]
        function = call.get("function") or {}
        index = event.get("index", self._next_call)
        self._next_call = index + 1
        pending = self._calls[index] = _PendingCall(call["id"], function["name"])
        arguments = function.get("arguments") or ""
        if arguments:
            pending.arguments.append(arguments)
        delta = chat_pb2.ToolCallDelta(
            index=index, id=pending.id, name=pending.name, arguments_json=arguments
        )
        events.append(_Event(tool_call_delta=delta))
        return events

    def _tool_call_delta(self, event: dict[str, Any]) -> list[_Event]:
        index = event.get("index", self._next_call - 1)
        pending = self._calls.get(index)
        if pending is None:
            raise self._errors.protocol(f"arguments for tool call {index} before its tool-call-start")
        arguments = event["delta"]["message"]["tool_calls"]["function"]["arguments"]
        if not arguments:
            return []
        pending.arguments.append(arguments)
        return [_Event(tool_call_delta=chat_pb2.ToolCallDelta(index=index, arguments_json=arguments))]

    def _tool_call_end(self, event: dict[str, Any]) -> list[_Event]:
        pending = self._calls.pop(event.get("index", self._next_call - 1), None)
        return [] if pending is None else [pending.whole()]

    def _citation_start(self, event: dict[str, Any]) -> list[_Event]:
        citation = event["delta"]["message"]["citations"]
        return [_Event(citation=item) for item in citations_from(citation, self._blocks.get)]

    def _message_end(self, event: dict[str, Any]) -> list[_Event]:
        delta = event.get("delta") or {}
        raw = delta.get("finish_reason") or ""
        events = self._close_plan()
        events.extend(self._calls[index].whole() for index in sorted(self._calls))
        self._calls.clear()
        usage = delta.get("usage")
        if usage:
            events.append(_Event(usage=usage_from(usage)))
        self.finished = True
        response_id = self._id or event.get("id") or ""
        if raw in FINISH_FAILURES:
            self.failure = self._errors.from_finish(self._model, raw, delta.get("error"), response_id)
            return events
        reason = FINISH_REASONS.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED)
        events.append(_Event(finish=chat_pb2.Finish(reason=reason, raw_reason=raw, id=response_id)))
        return events

    # -- helpers -------------------------------------------------------------------------------

    def _content(self, content: dict[str, Any]) -> list[_Event]:
        thinking = content.get("thinking")
        if thinking:
            return [_Event(delta=chat_pb2.ContentDelta(reasoning=thinking))]
        text = content.get("text")
        if text:
            self._answer_length += len(text)
            return [_Event(delta=chat_pb2.ContentDelta(text=text))]
        return []

    def _close_plan(self) -> list[_Event]:
        if not self._plan_open:
            return []
        self._plan_open = False
        delta = chat_pb2.ContentDelta(reasoning_signature=TOOL_PLAN_SIGNATURE, reasoning_index=_PLAN_INDEX)
        return [_Event(delta=delta)]


# Thinking (when enabled) is reasoning block 0; the tool plan is its own block, so a client that
# rebuilds the turn sends thinking back as thinking and the plan back as `tool_plan`.
_PLAN_INDEX = 1

_HANDLERS: dict[str, Callable[[CohereStreamDecoder, dict[str, Any]], list[_Event]]] = {
    "message-start": CohereStreamDecoder._message_start,
    "content-start": CohereStreamDecoder._content_start,
    "content-delta": CohereStreamDecoder._content_delta,
    "tool-plan-delta": CohereStreamDecoder._tool_plan_delta,
    "tool-call-start": CohereStreamDecoder._tool_call_start,
    "tool-call-delta": CohereStreamDecoder._tool_call_delta,
    "tool-call-end": CohereStreamDecoder._tool_call_end,
    "citation-start": CohereStreamDecoder._citation_start,
    "message-end": CohereStreamDecoder._message_end,
}
