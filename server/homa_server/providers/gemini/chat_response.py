"""Gemini `GenerateContentResponse` JSON -> homa `CompleteResponse`, plus the usage, finish-reason
and part mappings the stream decoder shares.

Decisions (also in docs/providers/gemini.md):
- Parts: `text` -> text; `thought: true` text -> Reasoning (with its `thoughtSignature`);
  `functionCall` -> ToolCall (id kept, else "call_<n>" by position in the response; `args` as JSON
  text; `thoughtSignature` in `ToolCall.signature`); `inlineData` (generated images) -> inline
  data. A signature on any other part is carried by a Reasoning part with empty text placed right
  before it, and re-attached on the way back (see contents.py). Code-execution parts are not
  requested by the adapter and are skipped.
- Finish reasons: STOP -> STOP, or TOOL_CALLS when the turn holds function calls; MAX_TOKENS ->
  LENGTH; SAFETY, RECITATION, LANGUAGE, BLOCKLIST, PROHIBITED_CONTENT, SPII and the IMAGE_SAFETY /
  IMAGE_PROHIBITED_CONTENT / IMAGE_RECITATION family -> CONTENT_FILTER. MALFORMED_FUNCTION_CALL,
  UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS, MISSING_THOUGHT_SIGNATURE, MALFORMED_RESPONSE, OTHER
  and anything new -> UNSPECIFIED: the turn ended without a usable answer or tool call, which is
  neither a normal stop nor a TOOL_CALLS turn the caller could act on. It is not raised as an error
  because the turn is complete and billed (usage must settle); `raw_finish_reason` keeps Google's
  value for callers that retry on it.
- A prompt blocked before generation (`promptFeedback.blockReason`) raises INVALID_ARGUMENT
  CONTENT_FILTERED; a filtered answer is the CONTENT_FILTER finish reason.
- Usage: input = promptTokenCount (cached included) + toolUsePromptTokenCount; cached_input =
  cachedContentTokenCount; output = candidatesTokenCount + thoughtsTokenCount; reasoning =
  thoughtsTokenCount; total = input + output. Gemini reports no cache writes.
- Only candidate 0 is read: the adapter never asks for more.
"""

from __future__ import annotations

from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.gemini.citations import AnswerText, citations_from
from homa_server.providers.gemini.error_mapping import content_filtered, protocol_error
from homa_server.providers.gemini.media import unb64

__all__ = [
    "FINISH_REASONS",
    "check_prompt",
    "finish_reason",
    "function_call",
    "parse_response",
    "signature_of",
    "usage_from",
]

_CONTENT_FILTER = usage_pb2.FINISH_REASON_CONTENT_FILTER
FINISH_REASONS: dict[str, usage_pb2.FinishReason.ValueType] = {
    "STOP": usage_pb2.FINISH_REASON_STOP,
    "MAX_TOKENS": usage_pb2.FINISH_REASON_LENGTH,
    "SAFETY": _CONTENT_FILTER,
    "RECITATION": _CONTENT_FILTER,
    "LANGUAGE": _CONTENT_FILTER,
    "BLOCKLIST": _CONTENT_FILTER,
    "PROHIBITED_CONTENT": _CONTENT_FILTER,
    "SPII": _CONTENT_FILTER,
    "IMAGE_SAFETY": _CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": _CONTENT_FILTER,
    "IMAGE_RECITATION": _CONTENT_FILTER,
}


def finish_reason(raw: str, *, tool_calls: bool) -> usage_pb2.FinishReason.ValueType:
    """homa finish reason for Gemini's `raw` value; STOP with function calls is TOOL_CALLS."""
    mapped = FINISH_REASONS.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED)
    if tool_calls and mapped == usage_pb2.FINISH_REASON_STOP:
        return usage_pb2.FINISH_REASON_TOOL_CALLS
    return mapped


def usage_from(meta: dict[str, Any]) -> usage_pb2.Usage:
    """Gemini `usageMetadata` -> homa Usage (see the module docstring)."""
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    output = int(meta.get("candidatesTokenCount") or 0) + thoughts
    return usage_pb2.Usage(
        input_tokens=prompt,
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        output_tokens=output,
        reasoning_tokens=thoughts,
        total_tokens=prompt + output,
    )


def check_prompt(provider: str, model: str, payload: dict[str, Any]) -> None:
    """Raise CONTENT_FILTERED when `payload.promptFeedback.blockReason` says the prompt was blocked."""
    feedback = payload.get("promptFeedback")
    if isinstance(feedback, dict):
        reason = feedback.get("blockReason")
        if reason and reason != "BLOCK_REASON_UNSPECIFIED":
            raise content_filtered(provider, model, str(reason))


def signature_of(part: dict[str, Any]) -> bytes:
    """The decoded `thoughtSignature` of `part` (b"" without one).

    Raises:
        ValueError: the signature is not base64.
    """
    signature = part.get("thoughtSignature")
    return unb64(signature) if signature else b""


def function_call(call: dict[str, Any], position: int, signature: bytes) -> content_pb2.ToolCall:
    """A homa ToolCall for Gemini's `functionCall`; the id is generated from `position` when absent."""
    args = call.get("args")
    return content_pb2.ToolCall(
        id=call.get("id") or f"call_{position}",
        name=call["name"],
        arguments_json=orjson.dumps(args if args is not None else {}).decode(),
        signature=signature,
    )


def parse_response(provider: str, model: str, payload: Any) -> chat_pb2.CompleteResponse:
    """Map a parsed `GenerateContentResponse`.

    Raises:
        GatewayError: CONTENT_FILTERED for a blocked prompt; UPSTREAM_PROTOCOL_ERROR when the
            payload is not a GenerateContentResponse.
    """
    if not isinstance(payload, dict):
        raise protocol_error(provider, "the response is not a JSON object")
    check_prompt(provider, model, payload)
    try:
        return _parse(payload)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers bad base64 and protobuf rejecting a wrongly typed field.
        raise protocol_error(provider, f"unexpected response shape ({type(exc).__name__})") from None


def _parse(payload: dict[str, Any]) -> chat_pb2.CompleteResponse:
    candidates = payload.get("candidates")
    if not candidates:
        raise ValueError("no candidates")
    candidate = candidates[0]
    content = candidate.get("content") or {}
    parts: list[content_pb2.Part] = []
    answer = AnswerText()
    calls = 0
    for index, part in enumerate(content.get("parts") or ()):
        signature = signature_of(part)
        if "functionCall" in part:
            call = function_call(part["functionCall"], calls, signature)
            calls += 1
            parts.append(content_pb2.Part(tool_call=call))
            continue
        if part.get("thought"):
            reasoning = content_pb2.Reasoning(text=part.get("text") or "", signature=signature)
            parts.append(content_pb2.Part(reasoning=reasoning))
            continue
        if signature:
            parts.append(content_pb2.Part(reasoning=content_pb2.Reasoning(signature=signature)))
        if "text" in part:
            text = part["text"]
            answer.add(text, index)
            if text:
                parts.append(content_pb2.Part(text=text))
        elif "inlineData" in part:
            blob = part["inlineData"]
            data = content_pb2.InlineData(mime_type=blob.get("mimeType") or "", data=unb64(blob["data"]))
            parts.append(content_pb2.Part(inline_data=data))
        # executableCode / codeExecutionResult / fileData: never requested, not mapped.
    raw = candidate.get("finishReason") or ""
    response = chat_pb2.CompleteResponse(
        id=payload.get("responseId") or "",
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=parts),
        finish_reason=finish_reason(raw, tool_calls=calls > 0),
        raw_finish_reason=raw,
    )
    usage = payload.get("usageMetadata")
    if usage:
        response.usage.CopyFrom(usage_from(usage))
    response.citations.extend(citations_from(candidate, answer))
    return response
