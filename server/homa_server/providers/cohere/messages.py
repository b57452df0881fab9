"""homa messages -> Cohere v2 `messages` plus top-level RAG `documents`.

Mapping decisions (also in docs/providers/cohere.md):
- ROLE_SYSTEM and ROLE_DEVELOPER -> `system` (Cohere has no developer role). `Message.name` has no
  Cohere field and is not sent.
- Content is a plain string when the message has exactly one text part (the smallest body), else an
  array of typed items (`text`, `image_url`).
- Images: inline image bytes -> `data:` URL, http(s)/data URLs -> `image_url.url`, detail -> auto/low/
  high. Inline text (text/*, JSON, YAML, XML) becomes a text item. Audio, PDFs and other binary
  inline data cannot be sent (INVALID_ARGUMENT).
- Documents: Cohere has no document content type in user messages; its RAG input is the top-level
  `documents` list, which the model cites. Text documents (with `data`) become
  `{"id": "doc_<n>", "data": {"title"?, "text"}}` in order of appearance, so citations name them.
  PDFs are rejected (Cohere has no native PDF input; extract the text first), so are documents by
  URI (Cohere cannot fetch them). A system message that only held documents is omitted; a user
  message that only held documents is rejected, because removing it would change the turns.
- Assistant: text and reasoning -> `content` items (`text`, `thinking`); a Reasoning part whose
  signature is `TOOL_PLAN_SIGNATURE` came from Cohere's `tool_plan` and goes back there. Reasoning
  parts with other signatures (another provider's) are sent as thinking text; redacted reasoning
  without text is dropped (Cohere cannot read encrypted reasoning). Tool calls -> `tool_calls`
  with the arguments as a JSON string ("{}" when empty; Cohere parses it). Tool-call signatures
  (Gemini) have no Cohere field. An assistant message left with nothing to send is omitted.
- ROLE_TOOL: one `{"role": "tool", "tool_call_id", "content"}` per result. `is_error` and the
  function name have no Cohere field; the failure is described in `content` by homa's contract.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers.cohere.result_mapping import TOOL_PLAN_SIGNATURE

__all__ = ["translate_messages"]

PDF = "application/pdf"
_DETAIL: dict[int, str] = {
    content_pb2.IMAGE_DETAIL_AUTO: "auto",
    content_pb2.IMAGE_DETAIL_LOW: "low",
    content_pb2.IMAGE_DETAIL_HIGH: "high",
}
# Non-"text/*" media types whose bytes are UTF-8 text.
_TEXTUAL = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml"})
_SYSTEM_ROLES = (content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER)


def translate_messages(messages: Sequence[content_pb2.Message]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Cohere `messages` and `documents` (possibly empty) for already validated homa messages.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the part Cohere cannot take.
    """
    out: list[dict[str, Any]] = []
    documents: list[Any] = []
    for i, message in enumerate(messages):
        role = message.role
        if role == content_pb2.ROLE_TOOL:
            out.extend(
                {
                    "role": "tool",
                    "tool_call_id": part.tool_result.tool_call_id,
                    "content": part.tool_result.content,
                }
                for part in message.parts
            )
        elif role == content_pb2.ROLE_ASSISTANT:
            assistant = _assistant(message)
            if assistant is not None:
                out.append(assistant)
        else:
            content = _content(message, i, documents)
            if content is not None:
                out.append({"role": "system" if role in _SYSTEM_ROLES else "user", "content": content})
            elif role == content_pb2.ROLE_USER:
                raise invalid_field(
                    f"messages[{i}].parts",
                    "Cohere takes documents separately from the turns; a user message needs text or "
                    "an image besides its documents",
                )
    return out, documents


def _content(
    message: content_pb2.Message, index: int, documents: list[Any]
) -> str | list[dict[str, Any]] | None:
    """String or typed items for a user/system message; documents are moved to `documents`."""
    message_parts = message.parts
    if len(message_parts) == 1 and message_parts[0].WhichOneof("kind") == "text":
        return message_parts[0].text  # the common case: one plain string
    items: list[dict[str, Any]] = []
    for j, part in enumerate(message_parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            items.append({"type": "text", "text": part.text})
        elif kind == "document":
            documents.append(_document(part.document, f"{path}.document", len(documents)))
        elif kind == "inline_data":
            items.append(_inline_data(part.inline_data, f"{path}.inline_data"))
        else:  # file_uri: validation admits nothing else in user/system messages
            items.append(_file_uri(part.file_uri, f"{path}.file_uri"))
    if not items:
        return None
    if len(items) == 1 and items[0]["type"] == "text":
        return str(items[0]["text"])
    return items


def _assistant(message: content_pb2.Message) -> dict[str, Any] | None:
    content: list[dict[str, Any]] = []
    plan: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        kind = part.WhichOneof("kind")
        if kind == "text":
            content.append({"type": "text", "text": part.text})
        elif kind == "tool_call":
            call = part.tool_call
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
                }
            )
        else:  # reasoning
            reasoning = part.reasoning
            if reasoning.signature == TOOL_PLAN_SIGNATURE:
                plan.append(reasoning.text)
            elif reasoning.text:
                content.append({"type": "thinking", "thinking": reasoning.text})
    if not content and not calls:
        return None  # nothing Cohere can take (only redacted reasoning, or a plan without calls)
    entry: dict[str, Any] = {"role": "assistant"}
    if len(content) == 1 and content[0]["type"] == "text":
        entry["content"] = content[0]["text"]
    elif content:
        entry["content"] = content
    if calls:
        if plan:
            entry["tool_plan"] = "".join(plan)
        entry["tool_calls"] = calls
    return entry


def _inline_data(data: content_pb2.InlineData, path: str) -> dict[str, Any]:
    mime = data.mime_type
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime.startswith("image/"):
        return _image(_data_url(mime, data.data), data.detail)
    if _is_text(mime):
        return {"type": "text", "text": _decode(data.data, f"{path}.data")}
    shown = mime or "(empty)"
    raise invalid_field(f"{path}.mime_type", f"Cohere takes images and text inline, not {shown}")


def _file_uri(file: content_pb2.FileUri, path: str) -> dict[str, Any]:
    uri = file.uri
    if not uri.startswith(("https://", "http://", "data:")):
        raise invalid_field(f"{path}.uri", "Cohere takes http(s) or data: URLs")
    if file.mime_type and not file.mime_type.startswith("image/"):
        raise invalid_field(f"{path}.mime_type", f"Cohere fetches only images by URL, not {file.mime_type}")
    return _image(uri, file.detail)


def _image(url: str, detail: int) -> dict[str, Any]:
    image: dict[str, Any] = {"url": url}
    named = _DETAIL.get(detail)
    if named is not None:
        image["detail"] = named
    return {"type": "image_url", "image_url": image}


def _document(doc: content_pb2.Document, path: str, number: int) -> dict[str, Any]:
    mime = doc.mime_type
    if mime == PDF:
        raise invalid_field(
            f"{path}.mime_type", "Cohere has no native PDF input; send the extracted text as text/plain"
        )
    if not _is_text(mime):
        raise invalid_field(f"{path}.mime_type", f"Cohere takes text documents, not {mime or '(empty)'}")
    if not doc.data:
        raise invalid_field(f"{path}.data", "Cohere cannot fetch documents by URI; send the text in `data`")
    text = _decode(doc.data, f"{path}.data")
    data = {"title": doc.title, "text": text} if doc.title else {"text": text}
    return {"id": f"doc_{number}", "data": data}


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in _TEXTUAL


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(path, "text content must be UTF-8") from None


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{binascii.b2a_base64(data, newline=False).decode('ascii')}"
