"""Anthropic `Message` JSON -> homa `CompleteResponse`, plus the usage, finish-reason and citation
mappings shared with the stream decoder.

Decisions (also in docs/providers/anthropic.md):
- Content blocks map in order: `text` -> text part, `thinking` -> Reasoning(text, signature),
  `redacted_thinking` -> Reasoning(redacted=true, signature=data), `tool_use` -> ToolCall with the
  `input` object serialised as `arguments_json`. Server-tool blocks (web search and friends, only
  present when requested through `extra_body`) have no homa part and are skipped; their citations
  still arrive on the text blocks.
- Usage: Anthropic's `input_tokens` EXCLUDES cache reads and writes, homa's includes them:
  input = input_tokens + cache_read_input_tokens + cache_creation_input_tokens,
  cached_input = cache_read, cache_write = cache_creation, output = output_tokens (thinking
  included), reasoning = output_tokens_details.thinking_tokens when reported.
- stop_reason: end_turn/stop_sequence -> STOP, max_tokens -> LENGTH, tool_use -> TOOL_CALLS,
  pause_turn -> PAUSE, refusal -> REFUSAL; `raw_finish_reason` keeps Anthropic's value.
- Citations: each citation of a text block becomes a homa Citation whose start/end index is the
  span of that text block in the concatenated answer text (the block is what is cited).
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.anthropic.error_mapping import protocol_error

__all__ = ["FINISH_REASONS", "citation_from", "finish_reason", "parse_message", "usage_from"]

FINISH_REASONS: dict[str, usage_pb2.FinishReason.ValueType] = {
    "end_turn": usage_pb2.FINISH_REASON_STOP,
    "stop_sequence": usage_pb2.FINISH_REASON_STOP,
    "max_tokens": usage_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": usage_pb2.FINISH_REASON_LENGTH,
    "tool_use": usage_pb2.FINISH_REASON_TOOL_CALLS,
    "pause_turn": usage_pb2.FINISH_REASON_PAUSE,
    "refusal": usage_pb2.FINISH_REASON_REFUSAL,
}


def finish_reason(raw: str) -> usage_pb2.FinishReason.ValueType:
    """homa finish reason for Anthropic's `stop_reason` (UNSPECIFIED for unknown values)."""
    return FINISH_REASONS.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED)


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) else 0


def usage_from(usage: dict[str, Any]) -> usage_pb2.Usage:
    """Anthropic `Usage` (or cumulative `MessageDeltaUsage` merged into it) -> homa Usage."""
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    input_tokens = _count(usage, "input_tokens") + cache_read + cache_write
    output_tokens = _count(usage, "output_tokens")
    details = usage.get("output_tokens_details")
    reasoning = _count(details, "thinking_tokens") if isinstance(details, dict) else 0
    return usage_pb2.Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        total_tokens=input_tokens + output_tokens,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def citation_from(raw: dict[str, Any], start: int, end: int) -> content_pb2.Citation:
    """One Anthropic citation of a text block spanning [start, end) of the answer text.

    Document citations (char, page, content-block locations) name the document by index (or file
    id); search-result and web-search citations carry their source and title.
    """
    kind = raw.get("type")
    citation = content_pb2.Citation(cited_text=raw.get("cited_text") or "", start_index=start, end_index=end)
    if kind == "web_search_result_location":
        citation.url = raw.get("url") or ""
        citation.title = raw.get("title") or ""
    elif kind == "search_result_location":
        source = raw.get("source") or ""
        if source.startswith(("https://", "http://")):
            citation.url = source
        citation.title = raw.get("title") or ""
        index = _int(raw.get("search_result_index"))
        citation.source_id = source or ("" if index is None else f"search_result:{index}")
    else:  # char_location, page_location, content_block_location
        citation.title = raw.get("document_title") or ""
        file_id = raw.get("file_id")
        index = _int(raw.get("document_index"))
        if isinstance(file_id, str) and file_id:
            citation.source_id = file_id
        elif index is not None:
            citation.source_id = f"document:{index}"
    return citation


def parse_message(provider: str, payload: Any) -> chat_pb2.CompleteResponse:
    """Map a parsed Anthropic `Message`.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a Message.
    """
    try:
        return _parse(payload)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers protobuf rejecting a wrongly typed field.
        raise protocol_error(provider, f"unexpected message shape ({type(exc).__name__})") from None


def _parse(payload: dict[str, Any]) -> chat_pb2.CompleteResponse:
    if payload.get("type") != "message":
        raise TypeError("not a message")
    response = chat_pb2.CompleteResponse(id=payload.get("id") or "")
    message = response.message
    message.role = content_pb2.ROLE_ASSISTANT
    offset = 0  # characters of answer text so far, for citation spans
    for block in payload["content"]:
        kind = block["type"]
        if kind == "text":
            text = block["text"]
            if text:
                message.parts.add(text=text)
            for raw in block.get("citations") or ():
                response.citations.append(citation_from(raw, offset, offset + len(text)))
            offset += len(text)
        elif kind == "thinking":
            message.parts.add(
                reasoning=content_pb2.Reasoning(
                    text=block.get("thinking") or "", signature=(block.get("signature") or "").encode()
                )
            )
        elif kind == "redacted_thinking":
            message.parts.add(
                reasoning=content_pb2.Reasoning(redacted=True, signature=(block.get("data") or "").encode())
            )
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            message.parts.add(
                tool_call=content_pb2.ToolCall(id=block["id"], name=block["name"], arguments_json=arguments)
            )
        # Other (server tool) blocks: see the module docstring.
    raw = payload.get("stop_reason") or ""
    response.finish_reason = finish_reason(raw)
    response.raw_finish_reason = raw
    usage = payload.get("usage")
    if isinstance(usage, dict):
        response.usage.CopyFrom(usage_from(usage))
    return response
