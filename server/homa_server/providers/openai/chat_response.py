"""OpenAI Chat Completions response JSON -> homa `CompleteResponse`, plus usage and finish mapping.

Decisions:
- A refusal (`message.refusal`) becomes a text part holding the refusal text and finish reason
  REFUSAL; `raw_finish_reason` keeps OpenAI's own value (usually "stop"). homa has no refusal part,
  and a caller that ignores finish reasons still sees why there is no answer.
- `reasoning_content` / `reasoning` (sent by OpenAI-compatible servers such as DeepSeek or vLLM;
  OpenAI itself never returns reasoning here) becomes a leading Reasoning part.
- Only choice 0 is read: the adapter never asks for `n > 1`.
- Tool calls of another type than "function" (custom tools) are skipped: homa never declares them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.openai.error_mapping import protocol_error

__all__ = ["FINISH_REASONS", "finish_reason", "parse_completion", "usage_from"]

FINISH_REASONS: dict[str, usage_pb2.FinishReason.ValueType] = {
    "stop": usage_pb2.FINISH_REASON_STOP,
    "length": usage_pb2.FINISH_REASON_LENGTH,
    "tool_calls": usage_pb2.FINISH_REASON_TOOL_CALLS,
    "function_call": usage_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": usage_pb2.FINISH_REASON_CONTENT_FILTER,
}


def finish_reason(raw: str | None, *, refused: bool) -> usage_pb2.FinishReason.ValueType:
    """homa finish reason for OpenAI's `raw` value; REFUSAL wins when the model refused."""
    if refused:
        return usage_pb2.FINISH_REASON_REFUSAL
    return FINISH_REASONS.get(raw or "", usage_pb2.FINISH_REASON_UNSPECIFIED)


def usage_from(usage: dict[str, Any]) -> usage_pb2.Usage:
    """OpenAI `CompletionUsage` -> homa Usage (cached, cache-write and reasoning details included)."""
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    result = usage_pb2.Usage(
        input_tokens=prompt,
        output_tokens=completion,
        total_tokens=usage.get("total_tokens") or prompt + completion,
    )
    prompt_details = usage.get("prompt_tokens_details")
    if prompt_details:
        result.cached_input_tokens = prompt_details.get("cached_tokens") or 0
        result.cache_write_tokens = prompt_details.get("cache_write_tokens") or 0
    completion_details = usage.get("completion_tokens_details")
    if completion_details:
        result.reasoning_tokens = completion_details.get("reasoning_tokens") or 0
    return result


def parse_completion(provider: str, payload: Any) -> chat_pb2.CompleteResponse:
    """Map a parsed `CreateChatCompletionResponse`.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a chat completion.
    """
    try:
        return _parse(payload)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers protobuf rejecting a wrongly typed field.
        raise protocol_error(provider, f"unexpected chat completion shape ({type(exc).__name__})") from None


def _parse(payload: Any) -> chat_pb2.CompleteResponse:
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    parts: list[content_pb2.Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(content_pb2.Part(reasoning=content_pb2.Reasoning(text=reasoning)))
    content = message.get("content")
    if content:
        parts.append(content_pb2.Part(text=content))
    refusal = message.get("refusal")
    if refusal:
        parts.append(content_pb2.Part(text=refusal))
    for call in message.get("tool_calls") or ():
        if call.get("type", "function") != "function":
            continue
        function = call["function"]
        parts.append(
            content_pb2.Part(
                tool_call=content_pb2.ToolCall(
                    id=call.get("id") or "",
                    name=function["name"],
                    arguments_json=function.get("arguments") or "",
                )
            )
        )
    raw = choice.get("finish_reason") or ""
    response = chat_pb2.CompleteResponse(
        id=payload.get("id") or "",
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=parts),
        finish_reason=finish_reason(raw, refused=bool(refusal)),
        raw_finish_reason=raw,
    )
    usage = payload.get("usage")
    if usage:
        response.usage.CopyFrom(usage_from(usage))
    created = payload.get("created")
    if isinstance(created, int):
        response.create_time.CopyFrom(timestamp_pb2.Timestamp(seconds=created))
    return response
