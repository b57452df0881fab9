"""Ollama `/api/chat` answers -> homa: the whole response, plus the pieces streams share.

Decisions:
- `message.thinking` becomes a leading Reasoning part (text only: Ollama has no signatures).
- Tool calls: Ollama sends `{"function": {"name", "arguments": <object>}}` without ids, so each call
  gets the stable id `call_<n>` (n = its position in the turn, counted across stream lines); an
  `id` the server does send is kept. `arguments_json` is the object serialised compactly.
- Finish: done_reason "stop" -> STOP, or TOOL_CALLS when the turn returned tool calls; "length" ->
  LENGTH; anything else ("load", "unload", future values) -> UNSPECIFIED, raw reason kept. A final
  object without `done_reason` (older servers) counts as a natural stop with raw reason "".
- Usage: prompt_eval_count -> input, eval_count -> output (thinking included: Ollama does not
  break it out), total = their sum. Ollama reports no cache figures, so cached/cache-write/reasoning
  stay 0.
- Ollama has no completion id: `id` stays empty. `created_at` becomes `create_time`.
- `message.images` (image-generating models) is not mapped: homa's stream has no image event.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import timestamp_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.ollama.error_mapping import protocol_error

__all__ = ["finish_reason", "parse_chat_response", "tool_call_from", "usage_from"]

_FINISH: dict[str, usage_pb2.FinishReason.ValueType] = {
    "stop": usage_pb2.FINISH_REASON_STOP,
    "": usage_pb2.FINISH_REASON_STOP,
    "length": usage_pb2.FINISH_REASON_LENGTH,
}


def finish_reason(raw: str, *, tool_calls: bool) -> usage_pb2.FinishReason.ValueType:
    """homa finish reason for Ollama's `done_reason` (`raw`, "" when absent)."""
    reason = _FINISH.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED)
    if tool_calls and reason == usage_pb2.FINISH_REASON_STOP:
        return usage_pb2.FINISH_REASON_TOOL_CALLS
    return reason


def usage_from(payload: dict[str, Any]) -> usage_pb2.Usage | None:
    """Usage from a final (`done: true`) object, or None when it carries no token counts."""
    prompt = payload.get("prompt_eval_count")
    output = payload.get("eval_count")
    if prompt is None and output is None:
        return None
    prompt = _count(prompt)
    output = _count(output)
    return usage_pb2.Usage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)


def tool_call_from(call: Any, position: int) -> content_pb2.ToolCall:
    """One Ollama tool call -> homa ToolCall with id `call_<position>` unless the server sent one.

    Raises:
        KeyError, TypeError, AttributeError: the call has the wrong shape (callers map these).
    """
    function = call["function"]
    name = function["name"]
    if not isinstance(name, str):
        raise TypeError("function.name is not a string")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        arguments_json = arguments  # already text (a proxy's OpenAI-style rendering)
    else:
        arguments_json = orjson.dumps({} if arguments is None else arguments).decode()
    call_id = call.get("id")
    return content_pb2.ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else f"call_{position}",
        name=name,
        arguments_json=arguments_json,
    )


def parse_chat_response(provider: str, payload: Any) -> chat_pb2.CompleteResponse:
    """Map a parsed non-streamed `ChatResponse`.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a chat response.
    """
    try:
        return _parse(payload)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers protobuf rejecting a wrongly typed field.
        raise protocol_error(provider, f"unexpected chat response shape ({type(exc).__name__})") from None


def _parse(payload: Any) -> chat_pb2.CompleteResponse:
    message = payload["message"]
    parts: list[content_pb2.Part] = []
    thinking = message.get("thinking")
    if thinking:
        parts.append(content_pb2.Part(reasoning=content_pb2.Reasoning(text=thinking)))
    content = message.get("content")
    if content:
        parts.append(content_pb2.Part(text=content))
    calls = message.get("tool_calls") or ()
    for position, call in enumerate(calls):
        parts.append(content_pb2.Part(tool_call=tool_call_from(call, position)))
    raw = payload.get("done_reason") or ""
    response = chat_pb2.CompleteResponse(
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=parts),
        finish_reason=finish_reason(raw, tool_calls=bool(calls)),
        raw_finish_reason=raw,
    )
    usage = usage_from(payload)
    if usage is not None:
        response.usage.CopyFrom(usage)
    created = payload.get("created_at")
    if isinstance(created, str) and created:
        stamp = timestamp_pb2.Timestamp()
        try:
            stamp.FromJsonString(created)
        except ValueError:
            pass  # informational only; an odd timestamp must not fail the call
        else:
            response.create_time.CopyFrom(stamp)
    return response


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
