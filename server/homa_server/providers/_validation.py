"""Request checks several vendors share word for word, done before any upstream call.

What differs per vendor (which roles may carry which parts, id and name rules, what a vendor
cannot express) stays in the vendor's validation.py; these helpers take the vendor's rule as an
argument where one is needed. Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason
INVALID_REQUEST) naming the exact field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field

__all__ = ["ROLE_NAMES", "check_tool_choice", "check_tool_names"]

# Role names for error messages (a dict lookup; `Role.Name` goes through the descriptor).
ROLE_NAMES = {
    content_pb2.ROLE_SYSTEM: "ROLE_SYSTEM",
    content_pb2.ROLE_DEVELOPER: "ROLE_DEVELOPER",
    content_pb2.ROLE_USER: "ROLE_USER",
    content_pb2.ROLE_ASSISTANT: "ROLE_ASSISTANT",
    content_pb2.ROLE_TOOL: "ROLE_TOOL",
}


def check_tool_names(tools: Sequence[content_pb2.Tool], rule: re.Pattern[str], rule_text: str) -> None:
    """Check that every tool name fully matches the vendor's `rule` and that names are unique.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tools[i].name`; the message is `rule_text` for a
            name that breaks the rule.
    """
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if not rule.fullmatch(tool.name):
            raise invalid_field(f"tools[{i}].name", rule_text)
        if tool.name in seen:
            raise invalid_field(f"tools[{i}].name", f"duplicate tool name {tool.name!r}")
        seen.add(tool.name)


def check_tool_choice(request: chat_pb2.CompleteRequest) -> None:
    """Check that a REQUIRED or NAMED tool choice comes with tools, and a named tool exists.

    Raises:
        GatewayError: INVALID_ARGUMENT naming `tool_choice` or `tool_choice.name`.
    """
    mode = request.tool_choice.mode
    if mode not in (content_pb2.ToolChoice.MODE_REQUIRED, content_pb2.ToolChoice.MODE_NAMED):
        return
    if not request.tools:
        raise invalid_field("tool_choice", "requiring a tool call needs at least one tool in `tools`")
    if mode == content_pb2.ToolChoice.MODE_NAMED:
        name = request.tool_choice.name
        if not name:
            raise invalid_field("tool_choice.name", "MODE_NAMED needs the name of a tool")
        if all(tool.name != name for tool in request.tools):
            raise invalid_field("tool_choice.name", f"no tool named {name!r} in `tools`")
