"""homa messages -> Anthropic `system` blocks and `messages` (content blocks), for chat and counting.

Mapping decisions (also in docs/providers/anthropic.md):
- ROLE_SYSTEM and ROLE_DEVELOPER text becomes top-level `system` text blocks, in order, wherever the
  messages stand in the conversation (Anthropic has no system turn in `messages`).
- ROLE_TOOL results become `tool_result` blocks of a user turn. Adjacent turns of the same
  Anthropic role are merged into one message, so consecutive tool results (and a user text that
  follows them) land in ONE user message with the results first, as Anthropic requires.
- Assistant parts keep their order. Reasoning with a signature becomes `thinking {thinking,
  signature}`; redacted reasoning becomes `redacted_thinking {data}` (the signature bytes). Both
  are sent back byte-for-byte, which Anthropic requires before `tool_use` blocks of a thinking
  turn. Reasoning without a signature (from another vendor) is dropped: Anthropic rejects thinking
  blocks it did not sign, and plain reasoning text is not something the model said.
- `ToolCall.arguments_json` is parsed: Anthropic takes `input` as a JSON object ("" means {}).
  `ToolCall.signature` (Gemini) has no Anthropic field and is not sent.
- Images (jpeg, png, gif, webp) go as base64 or URL sources; PDFs as document blocks (base64 or
  URL); text documents (text/*, JSON, XML, YAML) as plain-text document sources. Image detail
  hints have no Anthropic equivalent. Anthropic cannot fetch text documents by URL.
- Empty text parts are skipped (Anthropic rejects empty text blocks); a user turn left with no
  content is INVALID_ARGUMENT, an assistant turn left empty is omitted.
- `Message.name` has no Anthropic field and is not sent.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

import orjson

from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, invalid_field

__all__ = ["Translated", "translate_messages"]

PDF = "application/pdf"
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_IMAGE_ALIASES = {"image/jpg": "image/jpeg"}
# Non-"text/*" types whose bytes are UTF-8 text and can go as a plain-text document.
_TEXTUAL = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml"})
_MAX_TITLE = 500  # RequestDocumentBlock.title maxLength

Block = dict[str, Any]


class Translated:
    """The `system` blocks and `messages` of an Anthropic request."""

    __slots__ = ("messages", "system")

    def __init__(self, system: list[Block], messages: list[dict[str, Any]]) -> None:
        self.system = system
        self.messages = messages


def translate_messages(
    messages: Iterable[content_pb2.Message], *, document_citations: bool = False
) -> Translated:
    """Translate validated homa messages (run `validation.validate_messages` first).

    Args:
        messages: the conversation.
        document_citations: add `citations: {enabled: true}` to every document block.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the part that Anthropic cannot take.
    """
    system: list[Block] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role in (content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER):
            system.extend({"type": "text", "text": p.text} for p in message.parts if p.text)
            continue
        if role == content_pb2.ROLE_ASSISTANT:
            blocks = _assistant_blocks(message, i)
            if not blocks:
                continue
            anthropic_role = "assistant"
        else:
            if role == content_pb2.ROLE_TOOL:
                blocks = [_tool_result(part.tool_result) for part in message.parts]
            else:
                blocks = _user_blocks(message, i, document_citations)
                if not blocks:
                    raise invalid_field(f"messages[{i}].parts", "the message has no non-empty content")
            anthropic_role = "user"
        if out and out[-1]["role"] == anthropic_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": anthropic_role, "content": blocks})
    if not out:
        raise invalid_field(
            "messages", "Anthropic needs a user or assistant message besides the system prompt"
        )
    return Translated(system, out)


def _tool_result(result: content_pb2.ToolResult) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": result.tool_call_id}
    if result.content:
        block["content"] = result.content
    if result.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: content_pb2.Message, index: int) -> list[Block]:
    blocks: list[Block] = []
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("kind")
        if kind == "text":
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif kind == "tool_call":
            call = part.tool_call
            path = f"messages[{index}].parts[{j}].tool_call.arguments_json"
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call, path)})
        else:  # reasoning (validation admits nothing else)
            block = _reasoning(part.reasoning, f"messages[{index}].parts[{j}].reasoning.signature")
            if block is not None:
                blocks.append(block)
    return blocks


def _input(call: content_pb2.ToolCall, path: str) -> dict[str, Any]:
    if not call.arguments_json.strip():
        return {}
    try:
        value = orjson.loads(call.arguments_json)
    except orjson.JSONDecodeError:
        raise invalid_field(path, "must be a JSON object (Anthropic takes tool input as an object)") from None
    if not isinstance(value, dict):
        raise invalid_field(path, "must be a JSON object (Anthropic takes tool input as an object)")
    return value


def _reasoning(reasoning: content_pb2.Reasoning, path: str) -> Block | None:
    if not reasoning.signature:
        return None  # unsigned reasoning cannot be verified by Anthropic (see module docstring)
    try:
        signature = reasoning.signature.decode("ascii")
    except UnicodeDecodeError:
        raise invalid_field(path, "not an Anthropic thinking signature (it must be ASCII text)") from None
    if reasoning.redacted:
        return {"type": "redacted_thinking", "data": signature}
    return {"type": "thinking", "thinking": reasoning.text, "signature": signature}


def _user_blocks(message: content_pb2.Message, index: int, citations: bool) -> list[Block]:
    blocks: list[Block] = []
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif kind == "inline_data":
            blocks.append(_inline_data(part.inline_data, f"{path}.inline_data", citations))
        elif kind == "file_uri":
            blocks.append(_file_uri(part.file_uri, f"{path}.file_uri", citations))
        else:  # document
            blocks.append(_document(part.document, f"{path}.document", citations))
    return blocks


def _base64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in _TEXTUAL


def _text_source(data: bytes, path: str) -> Block:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(path, "text content must be UTF-8") from None
    return {"type": "text", "media_type": "text/plain", "data": text}


def _document_block(source: Block, title: str, citations: bool, path: str) -> Block:
    block: Block = {"type": "document", "source": source}
    if title:
        if len(title) > _MAX_TITLE:
            raise invalid_field(path, f"Anthropic accepts document titles of at most {_MAX_TITLE} characters")
        block["title"] = title
    if citations:
        block["citations"] = {"enabled": True}
    return block


def _inline_data(data: content_pb2.InlineData, path: str, citations: bool) -> Block:
    mime = _IMAGE_ALIASES.get(data.mime_type, data.mime_type)
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime in _IMAGE_TYPES:
        source = {"type": "base64", "media_type": mime, "data": _base64(data.data)}
        return {"type": "image", "source": source}
    if mime == PDF:
        source = {"type": "base64", "media_type": PDF, "data": _base64(data.data)}
        return _document_block(source, "", citations, path)
    if _is_text(mime):
        return _document_block(_text_source(data.data, f"{path}.data"), "", citations, path)
    raise _unsupported(f"{path}.mime_type", mime)


def _check_url(uri: str, path: str) -> None:
    if not uri.startswith(("https://", "http://")):
        raise invalid_field(path, "Anthropic fetches only http(s) URLs; send other content inline")


def _file_uri(file: content_pb2.FileUri, path: str, citations: bool) -> Block:
    uri = file.uri
    _check_url(uri, f"{path}.uri")
    mime = _IMAGE_ALIASES.get(file.mime_type, file.mime_type)
    if mime == PDF or (not mime and uri.split("?", 1)[0].lower().endswith(".pdf")):
        return _document_block({"type": "url", "url": uri}, "", citations, path)
    if not mime or mime in _IMAGE_TYPES:
        return {"type": "image", "source": {"type": "url", "url": uri}}
    raise invalid_field(
        f"{path}.mime_type", f"Anthropic fetches only images and PDFs by URL, not {mime}; send it inline"
    )


def _document(doc: content_pb2.Document, path: str, citations: bool) -> Block:
    mime = doc.mime_type
    if not mime:
        raise invalid_field(f"{path}.mime_type", "a document needs its MIME type")
    if not doc.data and not doc.uri:
        raise invalid_field(path, "a document needs `data` or `uri`")
    title_path = f"{path}.title"
    if mime == PDF:
        if doc.data:
            source = {"type": "base64", "media_type": PDF, "data": _base64(doc.data)}
        else:
            _check_url(doc.uri, f"{path}.uri")
            source = {"type": "url", "url": doc.uri}
        return _document_block(source, doc.title, citations, title_path)
    if _is_text(mime):
        if not doc.data:
            raise invalid_field(f"{path}.uri", "Anthropic cannot fetch text documents by URL; send `data`")
        return _document_block(_text_source(doc.data, f"{path}.data"), doc.title, citations, title_path)
    raise _unsupported(f"{path}.mime_type", mime)


def _unsupported(path: str, mime: str) -> GatewayError:
    return invalid_field(
        path,
        f"Anthropic cannot take content of type {mime or '(empty)'}; "
        "it takes JPEG, PNG, GIF and WebP images, PDFs and text documents",
    )
