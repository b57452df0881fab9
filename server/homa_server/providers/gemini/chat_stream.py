"""Gemini `streamGenerateContent?alt=sse` chunks -> homa `StreamCompleteResponse` events.

Each SSE event is a whole `GenerateContentResponse` holding only the new parts. There is no
terminator: the stream is complete when a chunk has carried `finishReason` and the connection then
closes. `GeminiStreamDecoder` is a pure state machine over the `data` payloads (no I/O), so the
provider's generator stays a thin loop. Per chunk it emits, in order:

- for each part: `delta.reasoning` (thought text) followed by `delta.reasoning_signature` when the
  thought is signed; for a signed non-thought part, `delta.reasoning_signature` first and then the
  part (the same "signature right before its part" rule as the unary mapping); `delta.text` for
  text; for a `functionCall` (Gemini sends calls whole, never in fragments) one `tool_call_delta`
  with the whole arguments, then the `tool_call` with its signature;
- reasoning blocks are numbered (`delta.reasoning_index`) so the assemblers rebuild the same
  Reasoning parts the unary mapping gives: thought text streamed over several chunks is one
  block; a signature closes its block, and so does any other part after thought text; a signed
  non-thought part gets a signature-only block of its own;
- `citation` events for citation/grounding metadata not seen before;
- `usage` when the chunk's `usageMetadata` differs from the last one sent (Gemini repeats it on
  every chunk; it is cumulative).

`done()` emits exactly one `finish`. A payload `{"error": ...}` raises the mapped GatewayError, a
blocked prompt CONTENT_FILTERED, malformed JSON or a wrong shape UPSTREAM_PROTOCOL_ERROR. Inline
media in a streamed answer (image output) has no stream event in homa and is skipped; use the unary
call for image output.
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.gemini.chat_response import (
    check_prompt,
    finish_reason,
    function_call,
    signature_of,
    usage_from,
)
from homa_server.providers.gemini.citations import AnswerText, citations_from
from homa_server.providers.gemini.error_mapping import error_from_event, protocol_error

__all__ = ["GeminiStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse


class GeminiStreamDecoder:
    """Decodes one streamed generation. Use one instance per stream."""

    __slots__ = (
        "_answer",
        "_block",
        "_block_open",
        "_calls",
        "_cited",
        "_id",
        "_model",
        "_provider",
        "_raw_finish",
        "_usage",
    )

    def __init__(self, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._id = ""
        self._raw_finish: str | None = None
        self._calls = 0
        self._usage: usage_pb2.Usage | None = None
        self._answer = AnswerText()
        self._cited: set[bytes] = set()
        self._block = 0  # reasoning_index of the current reasoning block
        self._block_open = False  # the current block has thought text and no signature yet

    @property
    def finished(self) -> bool:
        """True once a chunk carried `finishReason`: the answer is complete."""
        return self._raw_finish is not None

    def feed(self, data: bytes) -> list[_Event]:
        """Events for one SSE `data` payload.

        Raises:
            GatewayError: an upstream error event (mapped), a blocked prompt (CONTENT_FILTERED) or
                UPSTREAM_PROTOCOL_ERROR.
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
        check_prompt(self._provider, self._model, chunk)
        try:
            return self._chunk(chunk)
        except GatewayError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise protocol_error(self._provider, f"unexpected chunk shape ({type(exc).__name__})") from None

    def done(self) -> list[_Event]:
        """The closing event: exactly one `finish`."""
        raw = self._raw_finish or ""
        return [
            _Event(
                finish=chat_pb2.Finish(
                    reason=finish_reason(raw, tool_calls=self._calls > 0), raw_reason=raw, id=self._id
                )
            )
        ]

    def _chunk(self, chunk: dict[str, Any]) -> list[_Event]:
        events: list[_Event] = []
        if not self._id:
            self._id = chunk.get("responseId") or ""
        for candidate in chunk.get("candidates") or ():
            if candidate.get("index", 0) != 0:
                continue  # only one candidate is ever requested
            content = candidate.get("content") or {}
            for part in content.get("parts") or ():
                self._part(part, events)
            self._citations(candidate, events)
            raw = candidate.get("finishReason")
            if raw:
                self._raw_finish = raw
        meta = chunk.get("usageMetadata")
        if meta:
            usage = usage_from(meta)
            if usage != self._usage:
                self._usage = usage
                events.append(_Event(usage=usage))
        return events

    def _part(self, part: dict[str, Any], events: list[_Event]) -> None:
        signature = signature_of(part)
        text = part.get("text") or ""
        if part.get("thought"):
            if text:
                self._block_open = True
                events.append(
                    _Event(delta=chat_pb2.ContentDelta(reasoning=text, reasoning_index=self._block))
                )
            if signature:
                self._signature(signature, events)
            return
        if self._block_open:  # thought text ended without a signature: the next thoughts are a new block
            self._block += 1
            self._block_open = False
        call = part.get("functionCall")
        if call is not None:
            tool_call = function_call(call, self._calls, signature)  # a call carries its own signature
            events.append(
                _Event(
                    tool_call_delta=chat_pb2.ToolCallDelta(
                        index=self._calls,
                        id=tool_call.id,
                        name=tool_call.name,
                        arguments_json=tool_call.arguments_json,
                    )
                )
            )
            events.append(_Event(tool_call=tool_call))
            self._calls += 1
            return
        if signature:
            self._signature(signature, events)  # a block of its own, right before the part it signs
        if text:
            self._answer.add(text)
            events.append(_Event(delta=chat_pb2.ContentDelta(text=text)))

    def _signature(self, signature: bytes, events: list[_Event]) -> None:
        events.append(
            _Event(delta=chat_pb2.ContentDelta(reasoning_signature=signature, reasoning_index=self._block))
        )
        self._block += 1
        self._block_open = False

    def _citations(self, candidate: dict[str, Any], events: list[_Event]) -> None:
        if "citationMetadata" not in candidate and "groundingMetadata" not in candidate:
            return
        for citation in citations_from(candidate, self._answer):
            key = citation.SerializeToString(deterministic=True)
            if key not in self._cited:  # Gemini may repeat metadata on later chunks
                self._cited.add(key)
                events.append(_Event(citation=citation))
