"""ConverseStream events -> homa `StreamCompleteResponse` events.

`ConverseStreamDecoder` is a pure state machine over event-stream `Frame`s (no I/O), so it is
tested without a server and the provider's generator stays a thin loop. Per upstream event:

- `messageStart`: nothing.
- `contentBlockStart` with `toolUse{toolUseId, name}`: a `tool_call_delta` carrying id and name.
  Its `index` is the call's position among this turn's tool calls (0, 1, ...), not Bedrock's
  `contentBlockIndex`, which also counts text and reasoning blocks.
- `contentBlockDelta`: `text` -> `delta.text`; `toolUse.input` (a JSON text fragment) ->
  `tool_call_delta.arguments_json`, accumulated per block; `reasoningContent.text` ->
  `delta.reasoning`, `.signature` -> `delta.reasoning_signature` (UTF-8 bytes), `.redactedContent`
  -> `delta.reasoning_signature` (the decoded bytes) with `reasoning_redacted`; every reasoning
  delta carries `reasoning_index`, the block's position among this turn's reasoning blocks; `citation` -> a
  `citation` event spanning the block's text so far. Tool-result and image deltas are skipped.
- `contentBlockStop` of a tool-use block: the whole `tool_call` (arguments joined; "{}" when the
  model sent none).
- `messageStop{stopReason}`: remembered (and any tool call left open is emitted).
- `metadata{usage}`: a `usage` event (Bedrock reports usage once, at the end).

The stream is complete only when both `messageStop` and `metadata` have arrived; at that moment
exactly one `finish` event is emitted (reason mapped, raw reason kept, id = `x-amzn-RequestId`).
Exception frames (`throttlingException`, `modelStreamErrorException`, ...) and error frames raise
the mapped `GatewayError`; malformed payloads raise UPSTREAM_PROTOCOL_ERROR. Unknown event types
are ignored, so new Bedrock events do not break old gateways.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError
from homa_server.providers.bedrock.chat_response import citation_from, decode_blob, finish_reason, usage_from
from homa_server.providers.bedrock.error_mapping import error_from_exception, protocol_error
from homa_server.providers.bedrock.eventstream import Frame

__all__ = ["ConverseStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse
_NO_EVENTS: list[_Event] = []


class _PendingCall:
    __slots__ = ("arguments", "id", "name", "ordinal")

    def __init__(self, ordinal: int, call_id: str, name: str) -> None:
        self.ordinal = ordinal
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []


class ConverseStreamDecoder:
    """Decodes one ConverseStream. Use one instance per stream.

    Args:
        provider: instance name (errors, metadata).
        model: the model id (errors, metadata).
        request_id: the response's `x-amzn-RequestId` (finish id, error metadata).
        throttle_delay: `retry_after` for a throttling exception frame.
    """

    __slots__ = (
        "_block_text_start",
        "_calls",
        "_finished",
        "_handlers",
        "_model",
        "_next_ordinal",
        "_provider",
        "_reasoning_blocks",
        "_request_id",
        "_stop_reason",
        "_text_length",
        "_throttle_delay",
        "_usage_seen",
    )

    def __init__(self, provider: str, model: str, request_id: str, throttle_delay: float) -> None:
        self._provider = provider
        self._model = model
        self._request_id = request_id
        self._throttle_delay = throttle_delay
        self._calls: dict[int, _PendingCall] = {}  # by contentBlockIndex
        self._next_ordinal = 0
        self._stop_reason: str | None = None
        self._usage_seen = False
        self._finished = False
        self._text_length = 0  # characters of answer text so far, for citation spans
        self._block_text_start: dict[int, int] = {}
        self._reasoning_blocks: dict[int, int] = {}  # contentBlockIndex -> ContentDelta.reasoning_index
        self._handlers: dict[str, Callable[[dict[str, Any]], list[_Event]]] = {
            "messageStart": self._message_start,
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "contentBlockStop": self._block_stop,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    @property
    def complete(self) -> bool:
        """True once `messageStop` and `metadata` have both arrived (and `finish` was emitted)."""
        return self._finished

    def feed(self, frame: Frame) -> list[_Event]:
        """Events for one frame.

        Raises:
            GatewayError: a mapped exception/error frame, or UPSTREAM_PROTOCOL_ERROR.
        """
        if frame.message_type == "event":
            handler = self._handlers.get(frame.name)
            if handler is None:
                return _NO_EVENTS
            payload = self._payload(frame)
            try:
                return handler(payload)
            except GatewayError:
                raise
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise protocol_error(
                    self._provider, f"unexpected {frame.name} event shape ({type(exc).__name__})"
                ) from None
        if frame.message_type == "exception":
            message = self._payload(frame).get("message")
            raise self._error(frame.name, message)
        if frame.message_type == "error":
            raise self._error(frame.name, frame.error_message)
        raise protocol_error(self._provider, f"unknown event-stream message type {frame.message_type!r}")

    def _payload(self, frame: Frame) -> dict[str, Any]:
        try:
            payload = orjson.loads(frame.payload) if frame.payload else {}
        except orjson.JSONDecodeError:
            raise protocol_error(
                self._provider, f"malformed JSON in a {frame.name or 'stream'} frame"
            ) from None
        if not isinstance(payload, dict):
            raise protocol_error(self._provider, f"a {frame.name or 'stream'} frame is not a JSON object")
        return payload

    def _error(self, error_type: str, message: Any) -> GatewayError:
        return error_from_exception(
            self._provider,
            self._model,
            error_type,
            message,
            request_id=self._request_id,
            throttle_delay=self._throttle_delay,
        )

    # -- event handlers --------------------------------------------------------------------------

    def _message_start(self, payload: dict[str, Any]) -> list[_Event]:
        return _NO_EVENTS

    def _block_start(self, payload: dict[str, Any]) -> list[_Event]:
        tool = payload["start"].get("toolUse")
        if tool is None:
            return _NO_EVENTS
        call = _PendingCall(self._next_ordinal, tool["toolUseId"], tool["name"])
        self._next_ordinal += 1
        self._calls[payload["contentBlockIndex"]] = call
        return [
            _Event(tool_call_delta=chat_pb2.ToolCallDelta(index=call.ordinal, id=call.id, name=call.name))
        ]

    def _block_delta(self, payload: dict[str, Any]) -> list[_Event]:
        index = payload["contentBlockIndex"]
        delta = payload["delta"]
        text = delta.get("text")
        if text is not None:
            self._block_text_start.setdefault(index, self._text_length)
            self._text_length += len(text)
            return [_Event(delta=chat_pb2.ContentDelta(text=text))] if text else _NO_EVENTS
        tool = delta.get("toolUse")
        if tool is not None:
            return self._tool_input(index, tool["input"])
        reasoning = delta.get("reasoningContent")
        if reasoning is not None:
            ordinal = self._reasoning_blocks.setdefault(index, len(self._reasoning_blocks))
            return self._reasoning(reasoning, ordinal)
        citation = delta.get("citation")
        if citation is not None:
            start = self._block_text_start.get(index, self._text_length)
            return [_Event(citation=citation_from(citation, start, self._text_length))]
        return _NO_EVENTS

    def _tool_input(self, index: int, fragment: str) -> list[_Event]:
        call = self._calls.get(index)
        if call is None:
            raise protocol_error(
                self._provider, "tool input arrived for a block that did not start a tool call"
            )
        if not isinstance(fragment, str):
            raise TypeError("toolUse.input is not a string")
        if not fragment:
            return _NO_EVENTS
        call.arguments.append(fragment)
        return [_Event(tool_call_delta=chat_pb2.ToolCallDelta(index=call.ordinal, arguments_json=fragment))]

    def _reasoning(self, reasoning: dict[str, Any], ordinal: int) -> list[_Event]:
        text = reasoning.get("text")
        if text:
            return [_Event(delta=chat_pb2.ContentDelta(reasoning=text, reasoning_index=ordinal))]
        signature = reasoning.get("signature")
        if signature:
            delta = chat_pb2.ContentDelta(reasoning_signature=signature.encode(), reasoning_index=ordinal)
            return [_Event(delta=delta)]
        redacted = reasoning.get("redactedContent")
        if redacted:
            delta = chat_pb2.ContentDelta(
                reasoning_signature=decode_blob(redacted), reasoning_redacted=True, reasoning_index=ordinal
            )
            return [_Event(delta=delta)]
        return _NO_EVENTS

    def _block_stop(self, payload: dict[str, Any]) -> list[_Event]:
        call = self._calls.pop(payload["contentBlockIndex"], None)
        return [_whole_call(call)] if call is not None else _NO_EVENTS

    def _message_stop(self, payload: dict[str, Any]) -> list[_Event]:
        reason = payload["stopReason"]
        if not isinstance(reason, str):
            raise TypeError("stopReason is not a string")
        self._stop_reason = reason
        events = [_whole_call(call) for _, call in sorted(self._calls.items())]
        self._calls.clear()
        return self._maybe_finish(events)

    def _metadata(self, payload: dict[str, Any]) -> list[_Event]:
        usage = usage_from(payload["usage"])
        self._usage_seen = True
        return self._maybe_finish([_Event(usage=usage)])

    def _maybe_finish(self, events: list[_Event]) -> list[_Event]:
        if self._finished or self._stop_reason is None or not self._usage_seen:
            return events
        self._finished = True
        raw = self._stop_reason
        events.append(
            _Event(finish=chat_pb2.Finish(reason=finish_reason(raw), raw_reason=raw, id=self._request_id))
        )
        return events


def _whole_call(call: _PendingCall) -> _Event:
    arguments = "".join(call.arguments) or "{}"
    return _Event(tool_call=content_pb2.ToolCall(id=call.id, name=call.name, arguments_json=arguments))
