"""Anthropic Messages SSE events -> homa `StreamCompleteResponse` events.

`MessageStreamDecoder` is a pure state machine over SSE `data` payloads (no I/O), so it is tested
without a server and the provider's generator stays a thin loop. Per upstream event:

- `message_start` -> `usage` (input and cache counts; output so far);
- `content_block_start`: `tool_use` -> `tool_call_delta` with index (the call's position among
  this turn's tool calls, not Anthropic's block index), id and name; text/thinking blocks emit
  their initial text when not empty;
- `content_block_delta`: `text_delta` -> `delta.text`; `thinking_delta` -> `delta.reasoning`;
  `signature_delta` -> `delta.reasoning_signature`; `input_json_delta` -> `tool_call_delta` with
  the arguments piece (empty pieces are skipped); `citations_delta` is kept with its text block;
- `content_block_stop`: a tool block -> one whole `tool_call` whose `arguments_json` is the
  concatenated pieces (checked to be a JSON object; "{}" when there were none); a text block ->
  one `citation` per citation it carried, spanning the block in the answer text;
- `message_delta` -> `usage` (Anthropic's counts are cumulative; null fields keep the values of
  `message_start`) and the stop reason;
- `message_stop` -> exactly one `finish`; `done` becomes true. `ping` and unknown event types are
  ignored (Anthropic may add event types).

Thinking blocks carry `delta.reasoning_index` (their position among this turn's thinking blocks), so
clients can keep several blocks apart; a `redacted_thinking` block is one delta with
`reasoning_redacted` set and its data in `reasoning_signature`, which round-trips as a redacted
Reasoning part.

An `error` event raises the mapped `GatewayError`; malformed JSON or a wrong shape raises
UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError
from homa_server.providers.anthropic.error_mapping import error_from_event, protocol_error
from homa_server.providers.anthropic.messages_response import citation_from, finish_reason, usage_from

__all__ = ["MessageStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse


class _TextBlock:
    __slots__ = ("citations", "length", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.length = 0
        self.citations: list[dict[str, Any]] = []


class _ToolBlock:
    __slots__ = ("id", "index", "initial", "name", "pieces")

    def __init__(self, index: int, call_id: str, name: str, initial: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.initial = initial  # `input` of content_block_start when not empty (not streamed)
        self.pieces: list[str] = []


class _ThinkingBlock:
    """A thinking block: its position among this turn's reasoning blocks."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _OtherBlock:
    """Thinking, redacted thinking and server-tool blocks: nothing to keep until their stop."""

    __slots__ = ()


_OTHER = _OtherBlock()
_Block = _TextBlock | _ToolBlock | _ThinkingBlock | _OtherBlock


class MessageStreamDecoder:
    """Decodes one streamed Message. Use one instance per stream."""

    __slots__ = (
        "_blocks",
        "_id",
        "_model",
        "_offset",
        "_provider",
        "_raw_stop",
        "_thinking",
        "_tools",
        "_usage",
        "done",
    )

    def __init__(self, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._id = ""
        self._raw_stop = ""
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._offset = 0  # characters of answer text so far, for citation spans
        self._tools = 0  # tool calls started so far; the next one's homa index
        self._thinking = 0  # reasoning blocks started so far; the next one's reasoning_index
        self.done = False  # message_stop seen: the stream is complete

    def feed(self, data: bytes) -> list[_Event]:
        """Events for one SSE `data` payload.

        Raises:
            GatewayError: an upstream `error` event (mapped) or UPSTREAM_PROTOCOL_ERROR.
        """
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise protocol_error(self._provider, "malformed JSON in a stream event") from None
        if not isinstance(payload, dict):
            raise protocol_error(self._provider, "a stream event is not a JSON object")
        kind = payload.get("type")
        if kind == "error":
            raise error_from_event(self._provider, self._model, payload)
        try:
            return self._event(kind, payload)
        except GatewayError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise protocol_error(self._provider, f"unexpected {kind} event ({type(exc).__name__})") from None

    def _event(self, kind: Any, payload: dict[str, Any]) -> list[_Event]:
        if kind == "content_block_delta":
            return self._delta(payload["index"], payload["delta"])
        if kind == "content_block_start":
            return self._start(payload["index"], payload["content_block"])
        if kind == "content_block_stop":
            return self._stop(payload["index"])
        if kind == "message_start":
            message = payload["message"]
            self._id = message.get("id") or ""
            self._usage = dict(message["usage"])
            return [_Event(usage=usage_from(self._usage))]
        if kind == "message_delta":
            self._raw_stop = payload["delta"].get("stop_reason") or self._raw_stop
            for key, value in (payload.get("usage") or {}).items():
                if value is not None:  # null = unchanged since message_start
                    self._usage[key] = value
            return [_Event(usage=usage_from(self._usage))]
        if kind == "message_stop":
            return self._finish()
        return []  # ping, and event types added after this adapter was written

    def _start(self, index: int, block: dict[str, Any]) -> list[_Event]:
        kind = block["type"]
        if kind == "text":
            text_block = self._blocks[index] = _TextBlock(self._offset)
            text_block.citations.extend(block.get("citations") or ())
            return self._text(text_block, block.get("text") or "")
        if kind == "tool_use":
            given = block.get("input")
            initial = orjson.dumps(given).decode() if given else ""
            tool = self._blocks[index] = _ToolBlock(self._tools, block["id"], block["name"], initial)
            self._tools += 1
            delta = chat_pb2.ToolCallDelta(index=tool.index, id=tool.id, name=tool.name)
            return [_Event(tool_call_delta=delta)]
        if kind in ("thinking", "redacted_thinking"):
            thinking_block = self._blocks[index] = _ThinkingBlock(self._thinking)
            self._thinking += 1
            n = thinking_block.index
            if kind == "redacted_thinking":
                redacted = chat_pb2.ContentDelta(
                    reasoning_signature=str(block["data"]).encode(),
                    reasoning_redacted=True,
                    reasoning_index=n,
                )
                return [_Event(delta=redacted)]
            events = []
            thinking = block.get("thinking") or ""
            if thinking:
                events.append(_Event(delta=chat_pb2.ContentDelta(reasoning=thinking, reasoning_index=n)))
            signature = block.get("signature") or ""
            if signature:
                events.append(
                    _Event(
                        delta=chat_pb2.ContentDelta(reasoning_signature=signature.encode(), reasoning_index=n)
                    )
                )
            return events
        self._blocks[index] = _OTHER
        return []  # server-tool blocks

    def _text(self, block: _TextBlock, text: str) -> list[_Event]:
        if not text:
            return []
        block.length += len(text)
        self._offset += len(text)
        return [_Event(delta=chat_pb2.ContentDelta(text=text))]

    def _block(self, index: int) -> _Block:
        block = self._blocks.get(index)
        if block is None:
            raise protocol_error(self._provider, f"an event for content block {index}, which was not started")
        return block

    def _delta(self, index: int, delta: dict[str, Any]) -> list[_Event]:
        block = self._block(index)
        kind = delta["type"]
        if kind == "text_delta" and isinstance(block, _TextBlock):
            return self._text(block, delta["text"])
        if kind == "input_json_delta" and isinstance(block, _ToolBlock):
            piece = delta["partial_json"]
            if not piece:
                return []  # Anthropic often opens with an empty piece
            block.pieces.append(piece)
            fragment = chat_pb2.ToolCallDelta(index=block.index, arguments_json=piece)
            return [_Event(tool_call_delta=fragment)]
        n = block.index if isinstance(block, _ThinkingBlock) else 0
        if kind == "thinking_delta":
            return [_Event(delta=chat_pb2.ContentDelta(reasoning=delta["thinking"], reasoning_index=n))]
        if kind == "signature_delta":
            signature = delta["signature"].encode()
            return [_Event(delta=chat_pb2.ContentDelta(reasoning_signature=signature, reasoning_index=n))]
        if kind == "citations_delta" and isinstance(block, _TextBlock):
            block.citations.append(delta["citation"])
            return []
        if kind in ("text_delta", "input_json_delta", "citations_delta"):
            raise protocol_error(self._provider, f"a {kind} for a content block of another type")
        return []  # delta types added after this adapter was written

    def _stop(self, index: int) -> list[_Event]:
        block = self._block(index)
        del self._blocks[index]
        if isinstance(block, _ToolBlock):
            return [_Event(tool_call=self._tool_call(block))]
        if isinstance(block, _TextBlock) and block.citations:
            end = block.start + block.length
            return [_Event(citation=citation_from(raw, block.start, end)) for raw in block.citations]
        return []

    def _tool_call(self, block: _ToolBlock) -> content_pb2.ToolCall:
        arguments = "".join(block.pieces) or block.initial or "{}"
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise protocol_error(self._provider, f"tool call {block.id} has malformed JSON input") from None
        if not isinstance(parsed, dict):
            raise protocol_error(self._provider, f"tool call {block.id} input is not a JSON object")
        return content_pb2.ToolCall(id=block.id, name=block.name, arguments_json=arguments)

    def _finish(self) -> list[_Event]:
        # A tool block left open by the upstream is still delivered whole before `finish`.
        events = [
            _Event(tool_call=self._tool_call(block))
            for _, block in sorted(self._blocks.items())
            if isinstance(block, _ToolBlock)
        ]
        self._blocks.clear()
        self.done = True
        finish = chat_pb2.Finish(reason=finish_reason(self._raw_stop), raw_reason=self._raw_stop, id=self._id)
        events.append(_Event(finish=finish))
        return events
