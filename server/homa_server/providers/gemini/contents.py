"""homa messages -> Gemini `systemInstruction` and `contents`.

Mapping decisions (also in docs/providers/gemini.md):
- ROLE_SYSTEM and ROLE_DEVELOPER text goes, in order, into the one `systemInstruction`; Gemini has
  no position for instructions inside the conversation.
- ROLE_USER -> role "user"; ROLE_ASSISTANT -> role "model"; ROLE_TOOL -> role "user" with one
  `functionResponse` part per result. Consecutive ROLE_TOOL messages are merged into one content,
  because Gemini expects the answers to one turn's parallel calls together.
- `functionResponse.name` is required by Gemini: `ToolResult.name`, else the name of the latest
  earlier ToolCall with the same id, else INVALID_ARGUMENT. `id` is the ToolResult's
  `tool_call_id`. `response` must be a JSON object: a result whose content is a JSON object is sent
  as it is; any other content becomes `{"output": <JSON value or text>}`, and an error result
  `{"error": ...}` (the keys Google documents for function output and failures).
- Thought signatures: a ToolCall's `signature` is the `thoughtSignature` of its `functionCall` part.
  A Reasoning part with text becomes a thought part (`thought: true`) carrying its own signature.
  A Reasoning part with an empty text and a signature is the signature of the next part (as the
  response mapping produces it) and is re-attached to that part; with no next part, or when the
  next part has its own signature, it is sent as an empty text part with the signature. Empty
  reasoning without a signature is dropped.
- `Message.name` has no Gemini field and is not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers.gemini.media import b64, document_part, file_uri_part, inline_data_part

__all__ = ["build_contents"]

_SYSTEM_ROLES = frozenset({content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER})
# First characters of a JSON text; other tool output is plain text and is not parsed at all.
_JSON_START = frozenset('{["-0123456789tfn')


def build_contents(
    messages: Sequence[content_pb2.Message],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Translate validated `messages` into (`systemInstruction` or None, `contents`).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the part that Gemini cannot express.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for functionResponse.name
    previous_role = content_pb2.ROLE_UNSPECIFIED
    for i, message in enumerate(messages):
        role = message.role
        if role in _SYSTEM_ROLES:
            system.extend({"text": part.text} for part in message.parts)
        elif role == content_pb2.ROLE_USER:
            contents.append({"role": "user", "parts": _user_parts(message, i)})
        elif role == content_pb2.ROLE_ASSISTANT:
            parts = _model_parts(message, i, call_names)
            if parts:
                contents.append({"role": "model", "parts": parts})
        else:  # ROLE_TOOL (validation admits nothing else)
            parts = _function_responses(message, i, call_names)
            if previous_role == content_pb2.ROLE_TOOL and contents:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": "user", "parts": parts})
        previous_role = role
    return ({"parts": system} if system else None), contents


def _user_parts(message: content_pb2.Message, index: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("kind")
        if kind == "text":
            parts.append({"text": part.text})
        elif kind == "inline_data":
            parts.append(inline_data_part(part.inline_data, f"messages[{index}].parts[{j}].inline_data"))
        elif kind == "file_uri":
            parts.append(file_uri_part(part.file_uri, f"messages[{index}].parts[{j}].file_uri"))
        else:  # document
            parts.append(document_part(part.document, f"messages[{index}].parts[{j}].document"))
    return parts


def _signature_only(signature: bytes) -> dict[str, Any]:
    return {"text": "", "thoughtSignature": b64(signature)}


def _model_parts(
    message: content_pb2.Message, index: int, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending = b""  # a signature-only Reasoning part waiting for the part it belongs to
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("kind")
        if kind == "reasoning":
            reasoning = part.reasoning
            if pending:
                parts.append(_signature_only(pending))
                pending = b""
            if reasoning.text:
                thought: dict[str, Any] = {"text": reasoning.text, "thought": True}
                if reasoning.signature:
                    thought["thoughtSignature"] = b64(reasoning.signature)
                parts.append(thought)
            else:
                pending = reasoning.signature
            continue
        own = b""
        if kind == "text":
            out: dict[str, Any] = {"text": part.text}
        elif kind == "tool_call":
            call = part.tool_call
            out = {"functionCall": _function_call(call, f"messages[{index}].parts[{j}].tool_call")}
            if call.id:
                call_names[call.id] = call.name
            own = call.signature
        else:  # inline_data: model output (for example a generated image) sent back as history
            out = inline_data_part(part.inline_data, f"messages[{index}].parts[{j}].inline_data")
        if own:
            if pending:
                parts.append(_signature_only(pending))
            out["thoughtSignature"] = b64(own)
        elif pending:
            out["thoughtSignature"] = b64(pending)
        pending = b""
        parts.append(out)
    if pending:
        parts.append(_signature_only(pending))
    return parts


def _function_call(call: content_pb2.ToolCall, path: str) -> dict[str, Any]:
    args: Any = {}
    if call.arguments_json.strip():
        try:
            args = orjson.loads(call.arguments_json)
        except orjson.JSONDecodeError:
            raise invalid_field(f"{path}.arguments_json", "must be a JSON object") from None
        if not isinstance(args, dict):
            raise invalid_field(f"{path}.arguments_json", "must be a JSON object")
    function: dict[str, Any] = {"name": call.name, "args": args}
    if call.id:
        function["id"] = call.id
    return function


def _function_responses(
    message: content_pb2.Message, index: int, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        result = part.tool_result
        name = result.name or call_names.get(result.tool_call_id, "")
        if not name:
            raise invalid_field(
                f"messages[{index}].parts[{j}].tool_result.name",
                "Gemini needs the function name: set it, or include the assistant tool call "
                f"{result.tool_call_id!r} earlier in `messages`",
            )
        response = {"id": result.tool_call_id, "name": name, "response": _response_object(result)}
        parts.append({"functionResponse": response})
    return parts


def _response_object(result: content_pb2.ToolResult) -> dict[str, Any]:
    content = result.content
    value: Any = content
    if content.lstrip()[:1] in _JSON_START:
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            value = content
    if result.is_error:
        return {"error": value}
    if isinstance(value, dict):
        return value
    return {"output": value}
