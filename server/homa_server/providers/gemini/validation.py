"""Checks of homa chat input against what the Gemini API can express, done before any upstream call.

The request builders run these first and can then assume: every message has a known role and at
least one part; each part kind appears only in a role that can carry it; tool calls name their
function and tool results name the call they answer; tool names are valid and unique; the tool
choice names an existing tool; and every sampling option is inside Gemini's documented range.

Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason INVALID_REQUEST) naming the exact
field, for example `messages[2].parts[0].tool_result` or `parallel_tool_calls`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._validation import ROLE_NAMES, check_tool_choice, check_tool_names

__all__ = [
    "MAX_STOP",
    "validate_messages",
    "validate_model",
    "validate_sampling",
    "validate_tool_choice",
    "validate_tools",
]

# homa's tool-name rule (a subset of Gemini's `[a-zA-Z0-9_.:-]{1,128}`, so always accepted).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A Gemini model id (`gemini-2.5-flash`), optionally qualified (`models/...`, `tunedModels/...`).
# It becomes part of the URL path, so nothing else (no further `/`, no `?`, `#` or `:`) is accepted.
_MODEL = re.compile(r"(?:models/|tunedModels/)?[A-Za-z0-9][A-Za-z0-9._-]*")

MAX_STOP = 5  # GenerationConfig.stopSequences: "up to 5"
_INT32_MAX = 2**31 - 1

# Part kinds each role may carry. System instructions are text only on Gemini.
_ALLOWED: dict[int, frozenset[str]] = {
    content_pb2.ROLE_SYSTEM: frozenset({"text"}),
    content_pb2.ROLE_DEVELOPER: frozenset({"text"}),
    content_pb2.ROLE_USER: frozenset({"text", "inline_data", "file_uri", "document"}),
    content_pb2.ROLE_ASSISTANT: frozenset({"text", "tool_call", "reasoning", "inline_data"}),
    content_pb2.ROLE_TOOL: frozenset({"tool_result"}),
}

_WHY_NOT = {
    "tool_result": "tool results must be sent in a ROLE_TOOL message",
    "tool_call": "tool calls can only appear in ROLE_ASSISTANT messages",
    "reasoning": "reasoning can only appear in ROLE_ASSISTANT messages",
    "inline_data": "inline media can only be sent in ROLE_USER (or model output in ROLE_ASSISTANT) messages",
    "file_uri": "file URIs can only be sent in ROLE_USER messages",
    "document": "documents can only be sent in ROLE_USER messages (Gemini system instructions are text)",
    "text": "a ROLE_TOOL message may only contain tool_result parts",
}


def validate_model(model: str) -> None:
    """Check that `model` is a plain Gemini model id (it becomes part of the URL path).

    Raises:
        GatewayError: INVALID_ARGUMENT naming `model`.
    """
    if not _MODEL.fullmatch(model):
        raise invalid_field("model", f"{model!r} is not a Gemini model id (letters, digits, '.', '_', '-')")


def validate_messages(messages: Sequence[content_pb2.Message], field: str = "messages") -> None:
    """Check the structure of `messages`.

    Raises:
        GatewayError: INVALID_ARGUMENT for the first violation, with its field path.
    """
    if not messages:
        raise invalid_field(field, "at least one message is required")
    conversation = False
    for i, message in enumerate(messages):
        allowed = _ALLOWED.get(message.role)
        if allowed is None:
            raise invalid_field(f"{field}[{i}].role", "role must be set to a known value")
        if not message.parts:
            raise invalid_field(f"{field}[{i}].parts", "a message needs at least one part")
        if message.role not in (content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER):
            conversation = True
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind == "text" and kind in allowed:
                continue  # the common case; paths are only formatted for errors
            _check_part(part, kind, message.role, allowed, f"{field}[{i}].parts[{j}]")
    if not conversation:
        # Gemini needs `contents`; system instructions alone are not a prompt.
        raise invalid_field(field, "at least one non-system message is required")


def _check_part(
    part: content_pb2.Part,
    kind: str | None,
    role: content_pb2.Role.ValueType,
    allowed: frozenset[str],
    path: str,
) -> None:
    if kind is None:
        raise invalid_field(path, "the part has no content")
    if kind not in allowed:
        reason = _WHY_NOT[kind if role != content_pb2.ROLE_TOOL else "text"]
        raise invalid_field(f"{path}.{kind}", f"{reason} (message role is {ROLE_NAMES[role]})")
    if kind == "tool_call" and not part.tool_call.name:
        raise invalid_field(f"{path}.tool_call.name", "a tool call needs the function name")
    if kind == "tool_result" and not part.tool_result.tool_call_id:
        raise invalid_field(
            f"{path}.tool_result.tool_call_id", "a tool result must name the tool call it answers"
        )


def validate_tools(tools: Sequence[content_pb2.Tool]) -> None:
    """Check tool names: set, `[A-Za-z0-9_-]{1,64}` (homa's rule, which Gemini accepts), unique.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tools[i].name`.
    """
    check_tool_names(tools, _NAME, "must be 1-64 letters, digits, underscores or dashes")


def validate_tool_choice(request: chat_pb2.CompleteRequest) -> None:
    """Check that a REQUIRED or NAMED tool choice comes with tools, a named tool exists, and that
    `parallel_tool_calls` asks for nothing Gemini cannot do.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tool_choice`, `tool_choice.name` or
            `parallel_tool_calls`.
    """
    check_tool_choice(request)
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        # Gemini decides on parallel calls itself and has no switch to forbid them.
        raise invalid_field(
            "parallel_tool_calls", "Gemini cannot disable parallel tool calls; leave it unset"
        )


def validate_sampling(request: chat_pb2.CompleteRequest) -> None:
    """Check sampling options against Gemini's ranges.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the field.
    """
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        raise invalid_field("temperature", "must be between 0 and 2")
    if request.HasField("top_p") and not 0.0 < request.top_p <= 1.0:
        raise invalid_field("top_p", "must be in (0, 1]")
    if request.HasField("top_k") and request.top_k <= 0:
        raise invalid_field("top_k", "must be positive")
    if request.HasField("max_output_tokens") and request.max_output_tokens <= 0:
        raise invalid_field("max_output_tokens", "must be positive")
    if len(request.stop) > MAX_STOP:
        raise invalid_field("stop", f"Gemini accepts at most {MAX_STOP} stop sequences")
    if any(not stop for stop in request.stop):
        raise invalid_field("stop", "stop sequences must not be empty")
    if request.HasField("seed") and not -_INT32_MAX - 1 <= request.seed <= _INT32_MAX:
        raise invalid_field("seed", "Gemini seeds are 32-bit integers")
    for name in ("presence_penalty", "frequency_penalty"):
        # Gemini's documented range is [-2, 2): 2.0 itself is rejected upstream.
        if request.HasField(name) and not -2.0 <= getattr(request, name) < 2.0:
            raise invalid_field(name, "must be at least -2 and less than 2")
    if request.reasoning.budget_tokens < 0:
        raise invalid_field("reasoning.budget_tokens", "must not be negative")
    fmt = request.response_format
    if fmt.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA and not fmt.HasField("json_schema"):
        raise invalid_field("response_format.json_schema", "TYPE_JSON_SCHEMA needs a schema")
