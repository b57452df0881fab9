"""Converse response JSON -> homa `CompleteResponse`, plus the usage, finish and citation mappings
shared with the stream decoder.

Decisions:
- Usage: Bedrock's `inputTokens` counts only the tokens neither read from nor written to the
  prompt cache (`cacheReadInputTokens` and `cacheWriteInputTokens` come on top, as with Anthropic),
  so homa `input_tokens` = inputTokens + cacheReadInputTokens + cacheWriteInputTokens,
  `cached_input_tokens` = cacheReadInputTokens, `cache_write_tokens` = cacheWriteInputTokens,
  `output_tokens` = outputTokens (reasoning included; Bedrock does not break reasoning tokens out,
  so `reasoning_tokens` stays 0) and `total_tokens` = input + output.
- Finish reasons: end_turn/stop_sequence -> STOP, max_tokens and model_context_window_exceeded ->
  LENGTH, tool_use -> TOOL_CALLS, guardrail_intervened/content_filtered -> CONTENT_FILTER;
  anything else (malformed_model_output, malformed_tool_use, new values) -> UNSPECIFIED. The raw
  value is always kept.
- Content blocks: text -> text part; toolUse -> tool call (input serialised back to JSON text);
  reasoningText -> reasoning part (the signature string as UTF-8 bytes); redactedContent ->
  reasoning part with `redacted` and the bytes in `signature`; citationsContent -> its text as a
  text part plus one Citation per citation (the cited span is that text's position in the answer);
  image -> inline_data. Other blocks (server-side tool results, ...) are skipped.
- `id`: Converse returns no completion id, so the response's `x-amzn-RequestId` is used.
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.bedrock.content import IMAGE_FORMATS
from homa_server.providers.bedrock.error_mapping import protocol_error

__all__ = ["FINISH_REASONS", "citation_from", "decode_blob", "finish_reason", "parse_converse", "usage_from"]

FINISH_REASONS: dict[str, usage_pb2.FinishReason.ValueType] = {
    "end_turn": usage_pb2.FINISH_REASON_STOP,
    "stop_sequence": usage_pb2.FINISH_REASON_STOP,
    "max_tokens": usage_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": usage_pb2.FINISH_REASON_LENGTH,
    "tool_use": usage_pb2.FINISH_REASON_TOOL_CALLS,
    "guardrail_intervened": usage_pb2.FINISH_REASON_CONTENT_FILTER,
    "content_filtered": usage_pb2.FINISH_REASON_CONTENT_FILTER,
}
_IMAGE_MIME = {fmt: mime for mime, fmt in IMAGE_FORMATS.items() if mime != "image/jpg"}


def finish_reason(raw: str) -> usage_pb2.FinishReason.ValueType:
    """homa finish reason for Bedrock's `stopReason`."""
    return FINISH_REASONS.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED)


def usage_from(usage: dict[str, Any]) -> usage_pb2.Usage:
    """Bedrock `TokenUsage` -> homa Usage (input includes cache reads and writes; see module doc)."""
    fresh = usage.get("inputTokens") or 0
    cache_read = usage.get("cacheReadInputTokens") or 0
    cache_write = usage.get("cacheWriteInputTokens") or 0
    output = usage.get("outputTokens") or 0
    prompt = fresh + cache_read + cache_write
    return usage_pb2.Usage(
        input_tokens=prompt,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        total_tokens=prompt + output,
    )


def decode_blob(value: Any) -> bytes:
    """A JSON blob (base64 text) as bytes.

    Raises:
        ValueError: not base64 text (callers turn it into a protocol error).
    """
    if not isinstance(value, str):
        raise ValueError("a blob is not a string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        raise ValueError("a blob is not valid base64") from None


def citation_from(citation: dict[str, Any], start: int, end: int) -> content_pb2.Citation:
    """A Bedrock `Citation` (or streamed `CitationsDelta`) -> homa Citation.

    Args:
        start, end: the cited span in the answer text (characters), or -1 when unknown.
    """
    result = content_pb2.Citation(title=citation.get("title") or "", start_index=start, end_index=end)
    source = citation.get("source") or ""
    source_is_url = source.startswith(("https://", "http://"))
    location = citation.get("location") or {}
    web = location.get("web") or {}
    result.url = web.get("url") or (source if source_is_url else "")
    result.source_id = source if source and not source_is_url else _location_id(location)
    result.cited_text = "".join(item.get("text") or "" for item in citation.get("sourceContent") or ())
    return result


def _location_id(location: dict[str, Any]) -> str:
    """`document:<index>` or `search_result:<index>` from a CitationLocation, else ""."""
    for kind in ("documentChar", "documentPage", "documentChunk"):
        where = location.get(kind)
        if where and "documentIndex" in where:
            return f"document:{where['documentIndex']}"
    search = location.get("searchResultLocation")
    if search and "searchResultIndex" in search:
        return f"search_result:{search['searchResultIndex']}"
    return ""


def parse_converse(provider: str, payload: Any, request_id: str) -> chat_pb2.CompleteResponse:
    """Map a parsed `ConverseResponse`.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a Converse response.
    """
    try:
        return _parse(payload, request_id)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers protobuf rejecting a wrongly typed field and bad base64.
        raise protocol_error(provider, f"unexpected Converse response shape ({type(exc).__name__})") from None


def _parse(payload: Any, request_id: str) -> chat_pb2.CompleteResponse:
    message = payload["output"]["message"]
    parts: list[content_pb2.Part] = []
    citations: list[content_pb2.Citation] = []
    text_length = 0  # characters of answer text so far, for citation spans
    for block in message["content"]:
        if "text" in block:
            text = block["text"]
            parts.append(content_pb2.Part(text=text))
            text_length += len(text)
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input", {})).decode()
            parts.append(
                content_pb2.Part(
                    tool_call=content_pb2.ToolCall(
                        id=use["toolUseId"], name=use["name"], arguments_json=arguments
                    )
                )
            )
        elif "reasoningContent" in block:
            parts.append(content_pb2.Part(reasoning=_reasoning(block["reasoningContent"])))
        elif "citationsContent" in block:
            cited = block["citationsContent"]
            text = "".join(item.get("text") or "" for item in cited.get("content") or ())
            if text:
                parts.append(content_pb2.Part(text=text))
            start, text_length = text_length, text_length + len(text)
            citations.extend(citation_from(c, start, text_length) for c in cited.get("citations") or ())
        elif "image" in block:
            image = block["image"]
            data = decode_blob(image["source"]["bytes"])
            mime = _IMAGE_MIME.get(image.get("format", ""), "application/octet-stream")
            parts.append(content_pb2.Part(inline_data=content_pb2.InlineData(mime_type=mime, data=data)))
    raw = payload["stopReason"]
    response = chat_pb2.CompleteResponse(
        id=request_id,
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=parts),
        finish_reason=finish_reason(raw),
        raw_finish_reason=raw,
        citations=citations,
    )
    usage = payload.get("usage")
    if usage:
        response.usage.CopyFrom(usage_from(usage))
    return response


def _reasoning(block: dict[str, Any]) -> content_pb2.Reasoning:
    if "redactedContent" in block:
        return content_pb2.Reasoning(signature=decode_blob(block["redactedContent"]), redacted=True)
    text_block = block["reasoningText"]
    signature = text_block.get("signature") or ""
    return content_pb2.Reasoning(text=text_block.get("text") or "", signature=signature.encode())
