"""Checks of homa chat input against what Cohere's v2 Chat API can express, done before any call.

The gateway's own validation (`homa_server.validation.chat`) already ran when a request comes
through the servicer; these checks repeat the structural part (so the adapter is safe to call
directly) and add Cohere's limits:

- part kinds per role: system/developer carry text and documents; user text, images (inline or by
  URL) and documents; assistant text, tool calls and reasoning; tool only tool results;
- tool names `[A-Za-z0-9_-]{1,64}`, unique; tool calls and results carry their ids;
- tool choice: Cohere has REQUIRED and NONE only, so MODE_NAMED is rejected (naming the field);
- sampling ranges from the spec: temperature 0-1, p 0.01-0.99 (top_p above 0.99 is sent as 0.99,
  see `chat_request`), k up to 500, at most 5 stop sequences, seed >= 0, penalties 0-1;
- `parallel_tool_calls=false` cannot be expressed (Cohere always may call several tools).

Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason INVALID_REQUEST) naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field

__all__ = [
    "MAX_STOP_SEQUENCES",
    "MAX_TOP_K",
    "MAX_TOP_P",
    "MIN_TOP_P",
    "validate_request",
]

MAX_STOP_SEQUENCES = 5
MAX_TOP_K = 500
MIN_TOP_P = 0.01
MAX_TOP_P = 0.99
_MAX_NAME = 64
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

_ALLOWED: dict[int, frozenset[str]] = {
    content_pb2.ROLE_SYSTEM: frozenset({"text", "document"}),
    content_pb2.ROLE_DEVELOPER: frozenset({"text", "document"}),
    content_pb2.ROLE_USER: frozenset({"text", "inline_data", "file_uri", "document"}),
    content_pb2.ROLE_ASSISTANT: frozenset({"text", "tool_call", "reasoning"}),
    content_pb2.ROLE_TOOL: frozenset({"tool_result"}),
}
_NEEDS_CHECK = frozenset({"tool_call", "tool_result"})


def validate_request(request: chat_pb2.CompleteRequest) -> None:
    """Run every check above on `request`.

    Raises:
        GatewayError: INVALID_ARGUMENT for the first violation, naming its field.
    """
    _messages(request.messages)
    _tools(request.tools)
    _tool_choice(request)
    _sampling(request)


def _messages(messages: Sequence[content_pb2.Message]) -> None:
    if not messages:
        raise invalid_field("messages", "at least one message is required")
    for i, message in enumerate(messages):
        allowed = _ALLOWED.get(message.role)
        if allowed is None:
            raise invalid_field(f"messages[{i}].role", "role must be set to a known value")
        if not message.parts:
            raise invalid_field(f"messages[{i}].parts", "a message needs at least one part")
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind in allowed and kind not in _NEEDS_CHECK:
                continue  # the common case; field paths are only formatted for errors
            _part(part, kind, message.role, f"messages[{i}].parts[{j}]")


def _part(part: content_pb2.Part, kind: str | None, role: int, path: str) -> None:
    if kind is None:
        raise invalid_field(path, "the part has no content")
    if kind not in _ALLOWED[role]:
        role_name = content_pb2.Role.Name(role)  # type: ignore[arg-type]
        raise invalid_field(f"{path}.{kind}", f"Cohere cannot take a {kind} part in a {role_name} message")
    if kind == "tool_call":
        if not part.tool_call.id:
            raise invalid_field(f"{path}.tool_call.id", "a tool call needs its id")
        if not part.tool_call.name:
            raise invalid_field(f"{path}.tool_call.name", "a tool call needs the function name")
    elif not part.tool_result.tool_call_id:
        raise invalid_field(f"{path}.tool_result.tool_call_id", "a tool result must name its tool call")


def _tools(tools: Sequence[content_pb2.Tool]) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.name
        if not name or len(name) > _MAX_NAME or not set(name) <= _NAME_CHARS:
            raise invalid_field(f"tools[{i}].name", "must be 1-64 letters, digits, underscores or dashes")
        if name in seen:
            raise invalid_field(f"tools[{i}].name", f"duplicate tool name {name!r}")
        seen.add(name)


def _tool_choice(request: chat_pb2.CompleteRequest) -> None:
    mode = request.tool_choice.mode
    if mode == content_pb2.ToolChoice.MODE_NAMED:
        raise invalid_field(
            "tool_choice.mode",
            "Cohere cannot force one named tool (it offers only REQUIRED and NONE); "
            "use MODE_REQUIRED with only that tool in `tools`",
        )
    if mode == content_pb2.ToolChoice.MODE_REQUIRED and not request.tools:
        raise invalid_field("tool_choice", "requiring a tool call needs at least one tool in `tools`")
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        raise invalid_field(
            "parallel_tool_calls", "Cohere cannot turn parallel tool calls off; leave it unset"
        )


def _sampling(request: chat_pb2.CompleteRequest) -> None:
    if request.HasField("temperature"):
        _range("temperature", request.temperature, 0.0, 1.0)
    if request.HasField("top_p"):
        # Above 0.99 is accepted and sent as 0.99 (chat_request); below Cohere's minimum is not.
        _range("top_p", request.top_p, MIN_TOP_P, 1.0)
    if request.HasField("top_k") and not 1 <= request.top_k <= MAX_TOP_K:
        raise invalid_field("top_k", f"Cohere accepts 1 to {MAX_TOP_K}")
    if request.HasField("max_output_tokens") and request.max_output_tokens <= 0:
        raise invalid_field("max_output_tokens", "must be positive")
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise invalid_field("stop", f"Cohere accepts at most {MAX_STOP_SEQUENCES} stop sequences")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise invalid_field(f"stop[{i}]", "a stop sequence must not be empty")
    if request.HasField("seed") and request.seed < 0:
        raise invalid_field("seed", "Cohere accepts only non-negative seeds")
    for name in ("frequency_penalty", "presence_penalty"):
        if request.HasField(name):
            _range(name, getattr(request, name), 0.0, 1.0)
    if request.reasoning.budget_tokens < 0:
        raise invalid_field("reasoning.budget_tokens", "must not be negative")


def _range(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid_field(name, f"Cohere accepts {low:g} to {high:g}")
