"""Azure OpenAI `chat.completion.chunk` events -> homa `StreamCompleteResponse` events.

`AzureChatStreamDecoder` extends OpenAI's `ChatStreamDecoder` (same framing and chunk shape: text,
refusal and tool-call deltas, whole tool calls at the finish reason, usage, exactly one `finish`
from `done()`), with what Azure adds:

- the first chunk usually has `choices: []`, empty `id`/`model`/`object` and only
  `prompt_filter_results`; later chunks carry `content_filter_results`, and with asynchronous
  filtering annotation-only choices without `delta` may arrive. None of these produce events; a
  filter that stops the answer arrives as `finish_reason: "content_filter"`
  (FINISH_REASON_CONTENT_FILTER).
- "On Your Data" citations arrive in `delta.context.citations` and become `citation` events
  (numbered docN across the stream, as in `chat_response`).
- `data: {"error": ...}` is mapped by Azure's error mapping (content filter, numeric codes).
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.providers.azure_openai.chat_response import citations_from
from homa_server.providers.azure_openai.error_mapping import Origin, error_from_event, protocol_error
from homa_server.providers.openai.chat_stream import DONE, ChatStreamDecoder

__all__ = ["DONE", "AzureChatStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse


class AzureChatStreamDecoder(ChatStreamDecoder):
    """Decodes one streamed Azure chat completion. Use one instance per stream.

    Args:
        origin: provider instance, homa model and deployment (for errors and metadata).
    """

    __slots__ = ("_cited", "_origin")

    def __init__(self, origin: Origin) -> None:
        super().__init__(origin.provider, origin.model)
        self._origin = origin
        self._cited = 0

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
            raise error_from_event(self._origin, error)
        try:
            events = self._chunk(chunk)
            self._citations(chunk, events)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise protocol_error(self._provider, f"unexpected chunk shape ({type(exc).__name__})") from None
        return events

    def _citations(self, chunk: dict[str, Any], events: list[_Event]) -> None:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            context = delta.get("context") if delta else None
            if not context or choice.get("index", 0) != 0:
                continue
            citations = citations_from(context.get("citations") or (), self._cited)
            self._cited += len(citations)
            events.extend(_Event(citation=citation) for citation in citations)
