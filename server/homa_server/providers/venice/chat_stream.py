"""Venice `chat.completion.chunk` events -> homa `StreamCompleteResponse` events.

Venice streams the OpenAI chunk format (SSE `data:` lines ending with `data: [DONE]`) plus fields the
OpenAI decoder does not read, so this is Venice's own pure state machine (no I/O); it shares the
finish-reason table (`openai.chat_response.finish_reason`), the `[DONE]` marker and the
protocol-error builder with the OpenAI package. Per upstream chunk it emits, in order:

- `delta.reasoning` for `reasoning_content` (or, when a chunk has none, the text of its
  `reasoning_details`), `delta.text` for content, `delta.refusal` for refusal text; content that
  opens with `<think>…</think>` is split into reasoning and text (see `reasoning.ThinkSplitter`;
  off when the request stripped thinking or the deployment disabled parsing);
- one `tool_call_delta` per tool-call fragment, and when the choice's `finish_reason` arrives one
  whole `tool_call` per call, in index order;
- one `citation` per web-search result, from the first chunk that carries
  `venice_parameters.web_search_citations` (Venice sends them in a `choices: []` chunk);
- `usage` whenever a chunk carries usage (Venice sends it in a `choices: []` chunk before `[DONE]`,
  with or without `stream_options`); it is cumulative by construction.

`reasoning_details` and `thought_signature` fragments are collected: entries with the same `index`
are merged (their `text`/`data` strings concatenated, other fields last-wins), as OpenAI-compatible
streams deliver them. `done()` (on `[DONE]`) emits what the `<think>` splitter still holds, any tool
calls not yet emitted, one `delta.reasoning_signature` with the collected signature (see
`reasoning.encode_signature`), and exactly one `finish`.

In-stream errors: `{"error": {...}}` raises the mapped `GatewayError`, except a provider's content
block (`code: content_blocked_by_provider` / `type: content_filter_error`), which is a filtered
answer: the stream then finishes with FINISH_REASON_CONTENT_FILTER and the raw reason is the code.
Malformed JSON or a wrong shape raises UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import usage_pb2
from homa_server.providers._errors import protocol_error
from homa_server.providers.openai.chat_response import finish_reason
from homa_server.providers.openai.chat_stream import DONE, ToolCallAccumulator
from homa_server.providers.venice.chat_response import citations_from, content_text, usage_from
from homa_server.providers.venice.error_mapping import error_from_event
from homa_server.providers.venice.reasoning import Piece, ThinkSplitter, details_text, encode_signature

__all__ = ["DONE", "VeniceStreamDecoder"]

_Event = chat_pb2.StreamCompleteResponse
_FILTER_CODES = frozenset({"content_blocked_by_provider"})
_FILTER_TYPES = frozenset({"content_filter_error"})
_CONCATENATED = ("text", "data")


class VeniceStreamDecoder:
    """Decodes one streamed Venice chat completion. Use one instance per stream.

    Args:
        provider: instance name, for errors.
        model: the Venice model id, for error metadata.
        think_tags: split a `<think>` block opening the content into reasoning.
    """

    __slots__ = (
        "_calls",
        "_cited",
        "_details",
        "_filtered",
        "_id",
        "_model",
        "_provider",
        "_raw_finish",
        "_refused",
        "_thinker",
        "_thought",
    )

    def __init__(self, provider: str, model: str, *, think_tags: bool) -> None:
        self._provider = provider
        self._model = model
        self._id = ""
        self._raw_finish = ""
        self._refused = False
        self._filtered = False
        self._cited = False
        self._calls = ToolCallAccumulator()
        self._thinker = ThinkSplitter() if think_tags else None
        self._details: list[dict[str, Any]] = []
        self._thought = ""

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
            return self._error(error)
        try:
            return self._chunk(chunk)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise protocol_error(self._provider, f"unexpected chunk shape ({type(exc).__name__})") from None

    def done(self) -> list[_Event]:
        """Events closing the stream: held text, remaining tool calls, the signature, one `finish`."""
        events: list[_Event] = []
        if self._thinker is not None:
            self._pieces(self._thinker.flush(), events)
        events.extend(self._calls.flush())
        signature = encode_signature(self._details, self._thought)
        if signature:
            events.append(_Event(delta=chat_pb2.ContentDelta(reasoning_signature=signature)))
        if self._filtered:
            reason = usage_pb2.FINISH_REASON_CONTENT_FILTER
        else:
            reason = finish_reason(self._raw_finish, refused=self._refused)
        events.append(_Event(finish=chat_pb2.Finish(reason=reason, raw_reason=self._raw_finish, id=self._id)))
        return events

    def _error(self, error: Any) -> list[_Event]:
        if isinstance(error, dict) and (
            error.get("code") in _FILTER_CODES or error.get("type") in _FILTER_TYPES
        ):
            # The provider blocked the answer: a filtered answer, finished at [DONE].
            self._filtered = True
            self._raw_finish = str(error.get("code") or error.get("type"))
            return []
        raise error_from_event(self._provider, self._model, error)

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
        if not self._cited:
            citations = citations_from(chunk.get("venice_parameters"))
            if citations:
                self._cited = True
                events.extend(_Event(citation=citation) for citation in citations)
        usage = chunk.get("usage")
        if usage:
            events.append(_Event(usage=usage_from(usage)))
        return events

    def _delta(self, delta: dict[str, Any], events: list[_Event]) -> None:
        details = delta.get("reasoning_details")
        if isinstance(details, list):
            self._merge_details(details)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if not isinstance(reasoning, str) or not reasoning:
            reasoning = details_text(details)
        if reasoning:
            events.append(_Event(delta=chat_pb2.ContentDelta(reasoning=reasoning)))
        thought = delta.get("thought_signature")
        if isinstance(thought, str) and thought:
            self._thought = thought
        content = content_text(delta.get("content"))
        if content:
            if self._thinker is None:
                events.append(_Event(delta=chat_pb2.ContentDelta(text=content)))
            else:
                self._pieces(self._thinker.feed(content), events)
        refusal = delta.get("refusal")
        if refusal:
            self._refused = True
            events.append(_Event(delta=chat_pb2.ContentDelta(refusal=refusal)))
        fragments = delta.get("tool_calls")
        if fragments:
            for fragment in fragments:
                events.append(self._calls.fragment(fragment))

    @staticmethod
    def _pieces(pieces: Iterable[Piece], events: list[_Event]) -> None:
        for kind, text in pieces:
            if kind == "reasoning":
                events.append(_Event(delta=chat_pb2.ContentDelta(reasoning=text)))
            else:
                events.append(_Event(delta=chat_pb2.ContentDelta(text=text)))

    def _merge_details(self, details: list[Any]) -> None:
        for item in details:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                continue
            index = item.get("index")
            target = next(
                (d for d in self._details if index is not None and d.get("index") == index),
                None,
            )
            if target is None:
                self._details.append(dict(item))
                continue
            for key, value in item.items():
                if key in _CONCATENATED and isinstance(value, str) and isinstance(target.get(key), str):
                    target[key] += value
                elif value is not None:
                    target[key] = value
