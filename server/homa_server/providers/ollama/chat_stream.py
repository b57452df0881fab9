"""Ollama NDJSON chat lines -> homa `StreamCompleteResponse` events.

`ChatStreamDecoder` is a pure state machine over the lines of one `/api/chat` stream (no I/O), so
it is tested without a server and the provider's generator stays a thin loop. Per line it emits, in
order:

- `delta.reasoning` for `message.thinking`, `delta.text` for `message.content`;
- for each tool call in `message.tool_calls` (Ollama sends each call whole, usually in one line
  before the final one): one `tool_call_delta` carrying index, id, name and the whole arguments,
  then the `tool_call` itself. Indexes and the generated `call_<n>` ids count across lines;
- on the final line (`"done": true`), after its content: cumulative `usage` (when counted), then
  exactly one `finish`. `finished` turns True and later lines are refused.

A line `{"error": "..."}` raises the mapped `GatewayError` (the status stayed 200); malformed JSON or
a wrong shape raises UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.providers.ollama.chat_response import finish_reason, tool_call_from, usage_from
from homa_server.providers.ollama.error_mapping import ErrorMapper

__all__ = ["ChatStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse


class ChatStreamDecoder:
    """Decodes one streamed chat. Use one instance per stream.

    Args:
        errors: the provider's error mapper (for error lines and protocol errors).
        model: the model name, for error metadata.
    """

    __slots__ = ("_calls", "_errors", "_model", "finished")

    def __init__(self, errors: ErrorMapper, model: str) -> None:
        self._errors = errors
        self._model = model
        self._calls = 0  # tool calls seen so far in this turn
        self.finished = False

    def feed(self, line: bytes) -> list[_Event]:
        """Events for one NDJSON line.

        Raises:
            GatewayError: an upstream error line (mapped), or UPSTREAM_PROTOCOL_ERROR for malformed
                JSON, a wrong shape, or a line after the final one.
        """
        if self.finished:
            raise self._errors.protocol_error("a line arrived after the final done:true line")
        try:
            chunk = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise self._errors.protocol_error("malformed JSON in a stream line") from None
        if not isinstance(chunk, dict):
            raise self._errors.protocol_error("a stream line is not a JSON object")
        error = chunk.get("error")
        if error is not None:
            raise self._errors.from_line(self._model, error)
        try:
            return self._chunk(chunk)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._errors.protocol_error(
                f"unexpected stream line shape ({type(exc).__name__})"
            ) from None

    def _chunk(self, chunk: dict[str, Any]) -> list[_Event]:
        events: list[_Event] = []
        message = chunk.get("message")
        if message:
            thinking = message.get("thinking")
            if thinking:
                events.append(_Event(delta=chat_pb2.ContentDelta(reasoning=thinking)))
            content = message.get("content")
            if content:
                events.append(_Event(delta=chat_pb2.ContentDelta(text=content)))
            for call in message.get("tool_calls") or ():
                whole = tool_call_from(call, self._calls)
                events.append(
                    _Event(
                        tool_call_delta=chat_pb2.ToolCallDelta(
                            index=self._calls,
                            id=whole.id,
                            name=whole.name,
                            arguments_json=whole.arguments_json,
                        )
                    )
                )
                events.append(_Event(tool_call=whole))
                self._calls += 1
        done = chunk.get("done")
        if done is True:
            self.finished = True
            usage = usage_from(chunk)
            if usage is not None:
                events.append(_Event(usage=usage))
            raw = chunk.get("done_reason") or ""
            events.append(
                _Event(
                    finish=chat_pb2.Finish(
                        reason=finish_reason(raw, tool_calls=self._calls > 0), raw_reason=raw
                    )
                )
            )
        elif done is not None and done is not False:
            raise TypeError("done is not a boolean")
        return events
