"""Structural checks of homa chat input against what the Messages API accepts, before any call.

The request builders run these first and can then assume: every message has a known role and at
least one part, each part kind appears only in a role Anthropic can carry it in, tool calls and
results carry ids matching Anthropic's `^[a-zA-Z0-9_-]+$`, and tool names are valid and unique.
Media types, URLs and per-field limits are checked by the builders with the same field paths.

Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason INVALID_REQUEST) naming the exact
field, for example `messages[2].parts[0].tool_call.id`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._validation import check_tool_choice, check_tool_names

__all__ = ["validate_messages", "validate_tool_choice", "validate_tools"]

# Anthropic's documented patterns (openapi: Tool.name, RequestToolUseBlock.id / tool_use_id).
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")

_ALLOWED: dict[int, frozenset[str]] = {
    # Anthropic's top-level `system` takes text blocks only.
    content_pb2.ROLE_SYSTEM: frozenset({"text"}),
    content_pb2.ROLE_DEVELOPER: frozenset({"text"}),
    content_pb2.ROLE_USER: frozenset({"text", "inline_data", "file_uri", "document"}),
    content_pb2.ROLE_ASSISTANT: frozenset({"text", "tool_call", "reasoning"}),
    content_pb2.ROLE_TOOL: frozenset({"tool_result"}),
}

_NEEDS_IDS = frozenset({"tool_call", "tool_result"})

_WHY_NOT = {
    "tool_result": "tool results must be sent in a ROLE_TOOL message",
    "tool_call": "tool calls can only appear in ROLE_ASSISTANT messages",
    "reasoning": "reasoning can only appear in ROLE_ASSISTANT messages",
    "inline_data": "Anthropic accepts media only in ROLE_USER messages",
    "file_uri": "Anthropic accepts media only in ROLE_USER messages",
    "document": "Anthropic accepts documents only in ROLE_USER messages",
    "text": "a ROLE_TOOL message may only contain tool_result parts",
}


def validate_messages(messages: Sequence[content_pb2.Message], field: str = "messages") -> None:
    """Check the structure of `messages`.

    Raises:
        GatewayError: INVALID_ARGUMENT for the first violation, with its field path.
    """
    if not messages:
        raise invalid_field(field, "at least one message is required")
    for i, message in enumerate(messages):
        allowed = _ALLOWED.get(message.role)
        if allowed is None:
            raise invalid_field(f"{field}[{i}].role", "role must be set to a known value")
        if not message.parts:
            raise invalid_field(f"{field}[{i}].parts", "a message needs at least one part")
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind in allowed and kind not in _NEEDS_IDS:
                continue  # the common case; paths are only formatted for errors
            _check_part(part, kind, message.role, f"{field}[{i}].parts[{j}]")


def _check_part(
    part: content_pb2.Part, kind: str | None, role: content_pb2.Role.ValueType, path: str
) -> None:
    if kind is None:
        raise invalid_field(path, "the part has no content")
    if kind not in _ALLOWED[role]:
        reason = _WHY_NOT[kind if role != content_pb2.ROLE_TOOL else "text"]
        raise invalid_field(f"{path}.{kind}", f"{reason} (message role is {content_pb2.Role.Name(role)})")
    if kind == "tool_call":
        call = part.tool_call
        if not _TOOL_ID.fullmatch(call.id):
            raise invalid_field(f"{path}.tool_call.id", "Anthropic needs an id of letters, digits, _ and -")
        if not call.name:
            raise invalid_field(f"{path}.tool_call.name", "a tool call needs the function name")
    elif kind == "tool_result" and not _TOOL_ID.fullmatch(part.tool_result.tool_call_id):
        raise invalid_field(
            f"{path}.tool_result.tool_call_id",
            "must name the tool call it answers (letters, digits, _ and - for Anthropic)",
        )


def validate_tools(tools: Sequence[content_pb2.Tool]) -> None:
    """Check tool names: Anthropic's `[a-zA-Z0-9_-]{1,128}`, and unique.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tools[i].name`.
    """
    check_tool_names(tools, _TOOL_NAME, "must be 1-128 letters, digits, underscores or dashes")


def validate_tool_choice(request: chat_pb2.CompleteRequest) -> None:
    """Check that a REQUIRED or NAMED tool choice comes with tools, and a named tool exists.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tool_choice` or `tool_choice.name`.
    """
    check_tool_choice(request)
