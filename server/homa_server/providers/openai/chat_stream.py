"""OpenAI `chat.completion.chunk` events -> homa `StreamCompleteResponse` events.

`ChatStreamDecoder` is a pure state machine over SSE `data` payloads (no I/O), so it is tested
without a server and the provider's generator stays a thin loop. Per upstream chunk it emits, in
order:

- `delta.text` for content, `delta.refusal` for refusal text, `delta.reasoning` for the
  `reasoning_content`/`reasoning` fields of OpenAI-compatible servers;
- one `tool_call_delta` per tool-call fragment (index, and id/name on the first fragment, plus the
  arguments piece), while the arguments are accumulated per index;
- when the choice's `finish_reason` arrives: one whole `tool_call` per call, in index order;
- `usage` whenever a chunk carries usage (OpenAI: the extra chunk with `choices: []` before
  `[DONE]`); it is cumulative by construction.

`done()` (called on `data: [DONE]`) emits any tool calls not yet emitted and exactly one `finish`.
A payload `{"error": ...}` raises the mapped `GatewayError`; malformed JSON or a wrong shape raises
UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers.openai.chat_response import finish_reason, usage_from
from homa_server.providers.openai.error_mapping import error_from_event, protocol_error

__all__ = ["DONE", "ChatStreamDecoder", "ToolCallAccumulator"]

DONE = b"[DONE]"

_Event = chat_pb2.StreamCompleteResponse


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class ToolCallAccumulator:
    """Collects the `delta.tool_calls` fragments of one Chat Completions stream (OpenAI's wire
    format, which Venice streams too): each fragment becomes a `ToolCallDelta` at once, and
    `flush` gives the assembled `ToolCall`s, by index, when the choice finishes."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, _PendingCall] = {}

    def fragment(self, fragment: dict[str, Any]) -> _Event:
        """The delta event of one fragment, which is also added to its call."""
        index = fragment.get("index", 0)
        pending = self._calls.get(index)
        if pending is None:
            pending = self._calls[index] = _PendingCall()
        call_id = fragment.get("id") or ""
        if call_id:
            pending.id = call_id
        function = fragment.get("function") or {}
        name = function.get("name") or ""
        if name:
            pending.name = name
        arguments = function.get("arguments") or ""
        if arguments:
            pending.arguments.append(arguments)
        return _Event(
            tool_call_delta=chat_pb2.ToolCallDelta(
                index=index, id=call_id, name=name, arguments_json=arguments
            )
        )

    def flush(self) -> list[_Event]:
        """The complete calls collected so far, in index order; the accumulator is then empty."""
        if not self._calls:
            return []
        events = [
            _Event(
                tool_call=content_pb2.ToolCall(
                    id=call.id, name=call.name, arguments_json="".join(call.arguments)
                )
            )
            for _, call in sorted(self._calls.items())
        ]
        self._calls.clear()
        return events


class ChatStreamDecoder:
    """Decodes one streamed chat completion. Use one instance per stream."""

    __slots__ = ("_calls", "_id", "_model", "_provider", "_raw_finish", "_refused")

    def __init__(self, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._id = ""
        self._raw_finish = ""
        self._refused = False
        self._calls = ToolCallAccumulator()

    def feed(self, data: bytes) -> list[_Event]:
        """Events for one SSE `data` payload (not `[DONE]`).

        Raises:
            GatewayError: an upstream error event (mapped) or UPSTREAM_PROTOCOL_ERROR.
        """
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise protocol_error(self._provider, "malformed JSON in a stream event") from None
        if not isinstance(chunk, dict):
            raise protocol_error(self._provider, "a stream event is not a JSON object")
        error = chunk.get("error")
        if error is not None:
            raise error_from_event(self._provider, self._model, error)
        try:
            return self._chunk(chunk)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise protocol_error(self._provider, f"unexpected chunk shape ({type(exc).__name__})") from None

    def done(self) -> list[_Event]:
        """Events closing the stream: remaining whole tool calls, then exactly one `finish`."""
        events = self._calls.flush()
        events.append(
            _Event(
                finish=chat_pb2.Finish(
                    reason=finish_reason(self._raw_finish, refused=self._refused),
                    raw_reason=self._raw_finish,
                    id=self._id,
                )
            )
        )
        return events

    def _chunk(self, chunk: dict[str, Any]) -> list[_Event]:
        events: list[_Event] = []
        if not self._id:
            self._id = chunk.get("id") or ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # only one choice is ever requested
            delta = choice.get("delta")
            if delta:
                self._delta(delta, events)
            raw = choice.get("finish_reason")
            if raw:
                self._raw_finish = raw
                events.extend(self._calls.flush())
        usage = chunk.get("usage")
        if usage:
            events.append(_Event(usage=usage_from(usage)))
        return events

    def _delta(self, delta: dict[str, Any], events: list[_Event]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            events.append(_Event(delta=chat_pb2.ContentDelta(reasoning=reasoning)))
        content = delta.get("content")
        if content:
            events.append(_Event(delta=chat_pb2.ContentDelta(text=content)))
        refusal = delta.get("refusal")
        if refusal:
            self._refused = True
            events.append(_Event(delta=chat_pb2.ContentDelta(refusal=refusal)))
        fragments = delta.get("tool_calls")
        if fragments:
            for fragment in fragments:
                events.append(self._calls.fragment(fragment))
