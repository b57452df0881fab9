"""homa messages -> Ollama `/api/chat` `messages` (ChatMessage objects).

Mapping decisions (also in docs/providers/ollama.md):
- Roles: SYSTEM and DEVELOPER -> "system" (Ollama has no developer role), USER -> "user",
  ASSISTANT -> "assistant", and each `tool_result` of a ROLE_TOOL message -> one
  `{"role": "tool", "content", "tool_name"}` message, in the order given.
- `content` is one string: the message's text parts joined with "\\n" ("" when there are none,
  because the spec requires the field).
- Images: inline bytes (PNG, JPEG, WebP) -> `images` as raw base64 without a `data:` prefix, as
  Ollama wants. A FileUri is rejected (Ollama cannot fetch URLs and needs the bytes), except a
  `data:image/...;base64,` URI, whose payload is already what Ollama takes.
- Documents: text types (text/*, JSON, YAML, XML) are inlined as text after their title; PDFs and
  other binary documents are rejected: Ollama has no document input (text extraction is a later
  gateway feature).
- Assistant tool calls -> `tool_calls: [{"function": {"name", "arguments": <object>}}]`. Ollama's
  wire format has no call ids, so homa ids are not sent; `tool_name` on the results (documented in
  api.md; openapi.yaml omits it but its schema admits it) tells the model which call each result
  answers. A result without `name` takes the name of the call with the same id.
- Assistant reasoning -> `thinking` (api.md), so thinking models see their earlier thoughts. Ollama
  has no reasoning signatures; a signature from another vendor is opaque to it and not sent, and
  a redacted reasoning part (no text) contributes nothing.
- `Message.name` has no Ollama field and is not sent. `ToolResult.is_error` has none either: the
  homa contract already puts the failure in `content`.

Every rejection is `invalid_field` naming the exact part, before any upstream call.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

import orjson

from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field

__all__ = ["IMAGE_TYPES", "build_messages"]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp"})
_TEXTUAL = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml"})
_DATA_PREFIX = "data:"
_BASE64_MARK = ";base64,"

_ROLE = {
    content_pb2.ROLE_SYSTEM: "system",
    content_pb2.ROLE_DEVELOPER: "system",
    content_pb2.ROLE_USER: "user",
}


def build_messages(messages: Iterable[content_pb2.Message]) -> list[dict[str, Any]]:
    """Translate validated homa messages (see `validation.chat`) into Ollama messages.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the part Ollama cannot take.
    """
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for results without a name
    for i, message in enumerate(messages):
        role = message.role
        if role == content_pb2.ROLE_TOOL:
            for part in message.parts:
                result = part.tool_result
                entry: dict[str, Any] = {"role": "tool", "content": result.content}
                name = result.name or call_names.get(result.tool_call_id, "")
                if name:
                    entry["tool_name"] = name
                out.append(entry)
        elif role == content_pb2.ROLE_ASSISTANT:
            out.append(_assistant(message, i, call_names))
        else:
            out.append(_plain(message, i))
    return out


def _plain(message: content_pb2.Message, index: int) -> dict[str, Any]:
    parts = message.parts
    role = _ROLE[message.role]
    if len(parts) == 1 and parts[0].WhichOneof("kind") == "text":
        return {"role": role, "content": parts[0].text}  # the common case
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            texts.append(part.text)
        elif kind == "inline_data":
            _inline(part.inline_data, f"{path}.inline_data", texts, images)
        elif kind == "file_uri":
            images.append(_file_uri(part.file_uri, f"{path}.file_uri"))
        else:  # document (validation admits nothing else in these roles)
            texts.append(_document(part.document, f"{path}.document"))
    entry: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
    if images:
        entry["images"] = images
    return entry


def _assistant(message: content_pb2.Message, index: int, call_names: dict[str, str]) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("kind")
        if kind == "text":
            texts.append(part.text)
        elif kind == "tool_call":
            call = part.tool_call
            if call.id:
                call_names[call.id] = call.name
            arguments = _arguments(
                call.arguments_json, f"messages[{index}].parts[{j}].tool_call.arguments_json"
            )
            calls.append({"function": {"name": call.name, "arguments": arguments}})
        elif kind == "reasoning":
            if part.reasoning.text:
                thinking.append(part.reasoning.text)
        else:  # inline_data (validation admits nothing else for the assistant)
            _inline(part.inline_data, f"messages[{index}].parts[{j}].inline_data", texts, images)
    entry: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if thinking:
        entry["thinking"] = "".join(thinking)
    if calls:
        entry["tool_calls"] = calls
    if images:
        entry["images"] = images
    return entry


def _arguments(arguments_json: str, path: str) -> dict[str, Any]:
    if not arguments_json:
        return {}
    try:
        arguments = orjson.loads(arguments_json)
    except orjson.JSONDecodeError:
        raise invalid_field(path, "must be valid JSON (Ollama takes tool arguments as an object)") from None
    if not isinstance(arguments, dict):
        raise invalid_field(path, "must be a JSON object (Ollama takes tool arguments as an object)")
    return arguments


def _inline(data: content_pb2.InlineData, path: str, texts: list[str], images: list[str]) -> None:
    mime = data.mime_type.lower()
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime in IMAGE_TYPES:
        images.append(binascii.b2a_base64(data.data, newline=False).decode("ascii"))
    elif _is_text(mime):
        texts.append(_utf8(data.data, f"{path}.data"))
    else:
        raise invalid_field(
            f"{path}.mime_type",
            f"Ollama chat takes PNG, JPEG or WebP images and text, not {data.mime_type or '(empty)'}",
        )


def _file_uri(file: content_pb2.FileUri, path: str) -> str:
    uri = file.uri
    if uri.startswith(_DATA_PREFIX):
        mark = uri.find(_BASE64_MARK)
        mime = uri[len(_DATA_PREFIX) : mark].lower() if mark > 0 else ""
        if mime in IMAGE_TYPES and uri[mark + len(_BASE64_MARK) :]:
            return uri[mark + len(_BASE64_MARK) :]
        raise invalid_field(f"{path}.uri", "only base64 data: URLs of PNG, JPEG or WebP images are accepted")
    raise invalid_field(
        f"{path}.uri", "Ollama cannot fetch files by URI and needs the bytes; send them as inline_data"
    )


def _document(doc: content_pb2.Document, path: str) -> str:
    mime = doc.mime_type.lower()
    if not _is_text(mime):
        raise invalid_field(
            path,
            f"Ollama cannot read {doc.mime_type or 'untyped'} documents (no PDF or binary document "
            "input); send the extracted text as a text part",
        )
    if not doc.data:
        raise invalid_field(f"{path}.uri", "Ollama cannot fetch documents by URI; send `data`")
    text = _utf8(doc.data, f"{path}.data")
    return f"{doc.title}\n\n{text}" if doc.title else text


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in _TEXTUAL


def _utf8(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(path, "text content must be UTF-8") from None
