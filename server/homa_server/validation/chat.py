"""Provider-independent checks of chat requests, run before any routing or upstream call.

Each failure is INVALID_ARGUMENT with a BadRequest field violation naming the exact field
(`messages[2].parts[0]`). Vendor-specific limits are checked by the adapters.
"""

from __future__ import annotations

import math

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import FieldViolation, invalid_argument

MAX_MODEL_NAME = 256
MAX_STOP_SEQUENCES = 16
MAX_TOOLS = 512
_TOOL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

_PARTS_ALLOWED: dict[int, frozenset[str]] = {
    content_pb2.ROLE_SYSTEM: frozenset({"text"}),
    content_pb2.ROLE_DEVELOPER: frozenset({"text"}),
    content_pb2.ROLE_USER: frozenset({"text", "inline_data", "file_uri", "document"}),
    content_pb2.ROLE_ASSISTANT: frozenset({"text", "tool_call", "reasoning", "inline_data"}),
    content_pb2.ROLE_TOOL: frozenset({"tool_result"}),
}


def _check_messages(messages: list[content_pb2.Message], out: list[FieldViolation]) -> None:
    if not messages:
        out.append(FieldViolation("messages", "at least one message is required"))
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        allowed = _PARTS_ALLOWED.get(message.role)
        if allowed is None:
            out.append(FieldViolation(f"{where}.role", "role must be set"))
            continue
        if not message.parts:
            out.append(FieldViolation(f"{where}.parts", "a message needs at least one part"))
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind is None:
                out.append(FieldViolation(f"{where}.parts[{j}]", "part has no content"))
            elif kind not in allowed:
                role = content_pb2.Role.Name(message.role)
                out.append(FieldViolation(f"{where}.parts[{j}].{kind}", f"not allowed in a {role} message"))
            elif kind == "inline_data" and not part.inline_data.mime_type:
                out.append(FieldViolation(f"{where}.parts[{j}].inline_data.mime_type", "required"))
            elif kind == "tool_result" and not part.tool_result.tool_call_id:
                out.append(FieldViolation(f"{where}.parts[{j}].tool_result.tool_call_id", "required"))
            elif kind == "tool_call" and not part.tool_call.name:
                out.append(FieldViolation(f"{where}.parts[{j}].tool_call.name", "required"))


def _check_sampling(request: chat_pb2.CompleteRequest, out: list[FieldViolation]) -> None:
    if request.HasField("temperature") and not (0.0 <= request.temperature <= 2.0):
        out.append(FieldViolation("temperature", "must be between 0 and 2"))
    if request.HasField("top_p") and not (0.0 < request.top_p <= 1.0):
        out.append(FieldViolation("top_p", "must be in (0, 1]"))
    if request.HasField("max_output_tokens") and request.max_output_tokens <= 0:
        out.append(FieldViolation("max_output_tokens", "must be positive"))
    if request.HasField("top_k") and request.top_k <= 0:
        out.append(FieldViolation("top_k", "must be positive"))
    for name in ("presence_penalty", "frequency_penalty"):
        if request.HasField(name):
            value = getattr(request, name)
            if not math.isfinite(value) or not (-2.0 <= value <= 2.0):
                out.append(FieldViolation(name, "must be between -2 and 2"))
    if len(request.stop) > MAX_STOP_SEQUENCES:
        out.append(FieldViolation("stop", f"at most {MAX_STOP_SEQUENCES} stop sequences"))
    if request.reasoning.budget_tokens < 0:
        out.append(FieldViolation("reasoning.budget_tokens", "must not be negative"))


def _check_tools(request: chat_pb2.CompleteRequest, out: list[FieldViolation]) -> None:
    names: set[str] = set()
    if len(request.tools) > MAX_TOOLS:
        out.append(FieldViolation("tools", f"at most {MAX_TOOLS} tools"))
    for i, tool in enumerate(request.tools):
        if not tool.name or len(tool.name) > 64 or not set(tool.name) <= _TOOL_NAME_CHARS:
            out.append(FieldViolation(f"tools[{i}].name", "1-64 characters from [A-Za-z0-9_-]"))
        elif tool.name in names:
            out.append(FieldViolation(f"tools[{i}].name", f"duplicate tool name {tool.name!r}"))
        names.add(tool.name)
    choice = request.tool_choice
    if choice.mode == choice.MODE_NAMED and choice.name not in names:
        out.append(FieldViolation("tool_choice.name", "must name one of the request's tools"))
    if choice.mode in (choice.MODE_REQUIRED, choice.MODE_NAMED) and not request.tools:
        out.append(FieldViolation("tool_choice", "requires tools"))
    fmt = request.response_format
    if fmt.type == fmt.TYPE_JSON_SCHEMA:
        if not fmt.schema_name:
            out.append(FieldViolation("response_format.schema_name", "required for TYPE_JSON_SCHEMA"))
        if not fmt.HasField("json_schema"):
            out.append(FieldViolation("response_format.json_schema", "required for TYPE_JSON_SCHEMA"))


def validate_chat_request(request: chat_pb2.CompleteRequest) -> None:
    """Check `request`; raise INVALID_ARGUMENT listing every violation found.

    Raises:
        GatewayError: INVALID_ARGUMENT / INVALID_REQUEST with one BadRequest violation per problem.
    """
    out: list[FieldViolation] = []
    if len(request.model) > MAX_MODEL_NAME:
        out.append(FieldViolation("model", f"at most {MAX_MODEL_NAME} characters"))
    _check_messages(list(request.messages), out)
    _check_sampling(request, out)
    _check_tools(request, out)
    if out:
        summary = "; ".join(f"{v.field}: {v.description}" for v in out[:5])
        raise invalid_argument(f"invalid chat request: {summary}", *out)
