"""Checks of homa chat input against what Bedrock's Converse API can express, before any call.

The request builders run these first and may then assume: the conversation starts with a user
turn; every message has a known role and at least one part; each part kind is one its role can
carry on Bedrock; text is not blank (Bedrock rejects blank text blocks); tool calls and results
carry ids and names in Bedrock's character set; tool names are valid and unique; sampling values
are inside Bedrock's ranges; and options Bedrock cannot express (seed, penalties,
`parallel_tool_calls: false`) are absent.

Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason INVALID_REQUEST) naming the exact
field, for example `messages[2].parts[0].tool_call.id`. Media-specific checks (MIME types, S3
URIs, document names) are made by `content` with the same paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._validation import ROLE_NAMES, check_tool_choice, check_tool_names

__all__ = [
    "has_tool_blocks",
    "validate_messages",
    "validate_sampling",
    "validate_tool_choice",
    "validate_tools",
]

# Bedrock's ToolName and ToolUseId patterns (bedrock-runtime service model).
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
# RequestMetadata values (used for `user`).
_METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")

# Part kinds each role may carry on Bedrock. System blocks are text only in Converse.
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
    "inline_data": "inline media can only be sent in ROLE_USER or ROLE_ASSISTANT messages",
    "file_uri": "file URIs can only be sent in ROLE_USER messages",
    "document": "Bedrock takes documents only in ROLE_USER messages (system blocks are text only)",
    "text": "a ROLE_TOOL message may only contain tool_result parts",
}


def validate_messages(messages: Sequence[content_pb2.Message], field: str = "messages") -> None:
    """Check the structure of `messages` for Bedrock.

    Raises:
        GatewayError: INVALID_ARGUMENT for the first violation, with its field path.
    """
    if not messages:
        raise invalid_field(field, "at least one message is required")
    _check_first_turn(messages, field)
    for i, message in enumerate(messages):
        allowed = _ALLOWED.get(message.role)
        if allowed is None:
            raise invalid_field(f"{field}[{i}].role", "role must be set to a known value")
        if not message.parts:
            raise invalid_field(f"{field}[{i}].parts", "a message needs at least one part")
        has_document = False
        has_text = False
        for j, part in enumerate(message.parts):
            path = f"{field}[{i}].parts[{j}]"
            kind = part.WhichOneof("kind")
            if kind is None:
                raise invalid_field(path, "the part has no content")
            if kind not in allowed:
                reason = _WHY_NOT[kind if message.role != content_pb2.ROLE_TOOL else "text"]
                raise invalid_field(
                    f"{path}.{kind}", f"{reason} (message role is {ROLE_NAMES[message.role]})"
                )
            if kind == "text":
                if not part.text.strip():
                    raise invalid_field(f"{path}.text", "Bedrock rejects blank text; drop the part")
                has_text = True
            elif kind == "tool_call":
                _check_tool_call(part.tool_call, f"{path}.tool_call")
            elif kind == "tool_result":
                _check_tool_use_id(part.tool_result.tool_call_id, f"{path}.tool_result.tool_call_id")
            elif kind == "document":
                has_document = True
        if has_document and not has_text:
            raise invalid_field(
                f"{field}[{i}].parts",
                "Bedrock requires a text part in every message that carries a document",
            )


def _check_first_turn(messages: Sequence[content_pb2.Message], field: str) -> None:
    """Converse conversations start with a user turn (system text is hoisted out of them)."""
    for i, message in enumerate(messages):
        if message.role in (content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER):
            continue
        if message.role in (content_pb2.ROLE_ASSISTANT, content_pb2.ROLE_TOOL):
            raise invalid_field(
                f"{field}[{i}].role", "Bedrock conversations must start with a ROLE_USER message"
            )
        return
    if all(message.role in ROLE_NAMES for message in messages):
        raise invalid_field(field, "Bedrock needs a ROLE_USER message besides the system messages")


def _check_tool_call(call: content_pb2.ToolCall, path: str) -> None:
    _check_tool_use_id(call.id, f"{path}.id")
    if not _TOOL_NAME.fullmatch(call.name):
        raise invalid_field(f"{path}.name", "must be 1-64 letters, digits, underscores or dashes")


def _check_tool_use_id(value: str, path: str) -> None:
    if not value:
        raise invalid_field(path, "Bedrock needs the tool call id")
    if not _TOOL_USE_ID.fullmatch(value):
        raise invalid_field(path, "Bedrock tool call ids are 1-64 characters from [a-zA-Z0-9_.:-]")


def validate_tools(tools: Sequence[content_pb2.Tool]) -> None:
    """Check tool names: Bedrock's `[a-zA-Z0-9_-]{1,64}`, and unique.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tools[i].name`.
    """
    check_tool_names(tools, _TOOL_NAME, "must be 1-64 letters, digits, underscores or dashes")


def has_tool_blocks(messages: Sequence[content_pb2.Message]) -> bool:
    """True when any message carries a tool call or a tool result."""
    return any(
        part.WhichOneof("kind") in ("tool_call", "tool_result")
        for message in messages
        for part in message.parts
    )


def validate_tool_choice(request: chat_pb2.CompleteRequest) -> None:
    """Check tool choice and tool presence against Bedrock's rules.

    Bedrock needs `toolConfig` whenever the conversation holds toolUse/toolResult blocks, and it
    has no way to forbid tool calls while tools are declared.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tools`, `tool_choice` or `tool_choice.name`.
    """
    mode = request.tool_choice.mode
    history_has_tools = has_tool_blocks(request.messages)
    if history_has_tools and not request.tools:
        raise invalid_field(
            "tools", "Bedrock requires the tool definitions when the conversation holds tool calls or results"
        )
    if mode == content_pb2.ToolChoice.MODE_NONE and history_has_tools:
        raise invalid_field(
            "tool_choice",
            "Bedrock cannot forbid tool calls while the conversation holds tool calls or results "
            "(it requires the tools then); use MODE_AUTO",
        )
    check_tool_choice(request)


def validate_sampling(request: chat_pb2.CompleteRequest) -> None:
    """Check sampling options against `inferenceConfig`'s ranges; reject what Converse lacks.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the field.
    """
    # Written as `not (low <= x <= high)` so that NaN is rejected too.
    if request.HasField("temperature") and not (0.0 <= request.temperature <= 1.0):
        raise invalid_field("temperature", "Bedrock accepts temperatures from 0 to 1")
    if request.HasField("top_p") and not (0.0 <= request.top_p <= 1.0):
        raise invalid_field("top_p", "Bedrock accepts top_p from 0 to 1")
    if request.HasField("max_output_tokens") and request.max_output_tokens < 1:
        raise invalid_field("max_output_tokens", "must be positive")
    if request.HasField("top_k") and request.top_k < 1:
        raise invalid_field("top_k", "must be positive")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise invalid_field(f"stop[{i}]", "Bedrock rejects empty stop sequences")
    if request.HasField("seed"):
        raise invalid_field("seed", "Bedrock's Converse API has no seed; leave it unset")
    for name in ("presence_penalty", "frequency_penalty"):
        if request.HasField(name):
            raise invalid_field(name, f"Bedrock's Converse API has no {name}; leave it unset")
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        raise invalid_field(
            "parallel_tool_calls",
            "Bedrock's Converse API cannot turn parallel tool calls off; leave it unset",
        )
    if request.reasoning.budget_tokens < 0:
        raise invalid_field("reasoning.budget_tokens", "must not be negative")
    if request.user and not _METADATA_VALUE.fullmatch(request.user):
        raise invalid_field("user", "Bedrock request metadata allows at most 256 of [a-zA-Z0-9 :_@$#=/+,-.]")
