"""homa messages -> Venice `messages` (the OpenAI chat shape plus Venice's media and reasoning fields).

Run after `openai.validation.validate_messages`, so roles, part kinds per role and tool ids are
already checked. Decisions (also in docs/providers/venice.md):

- Only ROLE_USER content may carry media (`image_url`, `input_audio`, `video_url`, `file`); system,
  developer and assistant content is text only, as Venice's schema says.
- Images: PNG, JPEG, WebP, HEIF/HEIC and AVIF (the types Venice accepts), inline as `data:` URLs or
  by http(s) URL. `ImageDetail` is a hint Venice has no field for; it is not sent.
- Audio is inline only (Venice fetches no audio URLs); formats wav, mp3, aiff, aac, ogg, flac, m4a,
  pcm16, pcm24. Video: mp4, mpeg, quicktime/mov, webm inline, or any http(s) URL (YouTube links
  included) as `video_url`.
- Documents: PDF, EPUB, DOCX, PPTX, XLSX and XLS go as `file` parts (a `data:` URL or an http(s)
  URL in `file_data`); Venice extracts their text server-side. Text documents (text/*, JSON, YAML,
  XML) with inline data are sent as text, preceded by their title, so no extraction is involved.
- Empty text parts are left out of content arrays: Venice requires at least one character there.
- Assistant reasoning goes back as `reasoning_content` (joined text) plus the `reasoning_details`
  and `thought_signature` carried in the Reasoning signature (see `reasoning`). An assistant message
  with nothing but reasoning is omitted: Venice drops messages without content or tool calls.
- A tool result becomes one `{"role": "tool", "tool_call_id", "content", "name"?}` message; the
  function name helps models (Gemini) whose APIs need it. `is_error` has no Venice field; homa
  already puts the failure into `content`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, invalid_field
from homa_server.providers.openai import parts
from homa_server.providers.venice.reasoning import decode_signature

__all__ = ["venice_messages"]

_ROLE = {
    content_pb2.ROLE_SYSTEM: "system",
    content_pb2.ROLE_DEVELOPER: "developer",
    content_pb2.ROLE_USER: "user",
}
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/heif", "image/heic", "image/avif"}
)
AUDIO_FORMATS: dict[str, str] = {
    **parts.AUDIO_FORMATS,
    "audio/aiff": "aiff",
    "audio/x-aiff": "aiff",
    "audio/aac": "aac",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/l16": "pcm16",
    "audio/l24": "pcm24",
}
VIDEO_TYPES = frozenset({"video/mp4", "video/mpeg", "video/quicktime", "video/mov", "video/webm"})
# Document types Venice extracts to text, with the file name extension it is told.
DOCUMENT_TYPES: dict[str, str] = {
    parts.PDF: "pdf",
    "application/epub+zip": "epub",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel": "xls",
}
_HTTP = ("https://", "http://")


def venice_messages(messages: Iterable[content_pb2.Message]) -> list[dict[str, Any]]:
    """Translate validated homa messages.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the part Venice cannot take.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role == content_pb2.ROLE_TOOL:
            for part in message.parts:
                result = part.tool_result
                tool = {"role": "tool", "tool_call_id": result.tool_call_id, "content": result.content}
                if result.name:
                    tool["name"] = result.name
                out.append(tool)
            continue
        if role == content_pb2.ROLE_ASSISTANT:
            assistant = _assistant(message)
            if assistant is not None:
                out.append(assistant)
            continue
        user = role == content_pb2.ROLE_USER
        content = _content(message, i) if user else _text_only(message, i)
        entry: dict[str, Any] = {"role": _ROLE[role], "content": content}
        if message.name:
            entry["name"] = message.name
        out.append(entry)
    return out


def _collapse(items: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part as a plain string (smallest body); "" when nothing is left."""
    if not items:
        return ""
    if len(items) == 1 and items[0]["type"] == "text":
        text: str = items[0]["text"]
        return text
    return items


def _text_only(message: content_pb2.Message, index: int) -> str | list[dict[str, Any]]:
    message_parts = message.parts
    if len(message_parts) == 1 and message_parts[0].WhichOneof("kind") == "text":
        return message_parts[0].text
    items: list[dict[str, Any]] = []
    for j, part in enumerate(message_parts):
        if part.WhichOneof("kind") == "text":
            _add_text(items, part.text)
            continue
        doc = part.document  # validation admits only text and documents here
        path = f"messages[{index}].parts[{j}].document"
        if not (parts.is_text_mime(doc.mime_type) and doc.data):
            raise invalid_field(
                path, "Venice takes files only in ROLE_USER messages; inline text documents are accepted"
            )
        _add_text(items, _document_text(doc, path))
    return _collapse(items)


def _content(message: content_pb2.Message, index: int) -> str | list[dict[str, Any]]:
    message_parts = message.parts
    if len(message_parts) == 1 and message_parts[0].WhichOneof("kind") == "text":
        return message_parts[0].text  # the common case: one plain string
    items: list[dict[str, Any]] = []
    for j, part in enumerate(message_parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            _add_text(items, part.text)
        elif kind == "inline_data":
            items.append(_inline_data(part.inline_data, f"{path}.inline_data"))
        elif kind == "file_uri":
            items.append(_file_uri(part.file_uri, f"{path}.file_uri"))
        else:  # document (validation admits nothing else for users)
            item = _document(part.document, f"{path}.document")
            if item["type"] != "text" or item["text"]:
                items.append(item)
    return _collapse(items)


def _add_text(items: list[dict[str, Any]], text: str) -> None:
    if text:
        items.append({"type": "text", "text": text})


def _assistant(message: content_pb2.Message) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    details: list[dict[str, Any]] = []
    thought = ""
    for part in message.parts:
        kind = part.WhichOneof("kind")
        if kind == "text":
            texts.append(part.text)
        elif kind == "tool_call":
            call = part.tool_call
            function = {"name": call.name, "arguments": call.arguments_json or "{}"}
            calls.append({"id": call.id, "type": "function", "function": function})
        else:  # reasoning
            reasoning.append(part.reasoning.text)
            more, signature = decode_signature(part.reasoning.signature)
            details.extend(more)
            thought = signature or thought
    if not texts and not calls:
        return None
    entry: dict[str, Any] = {"role": "assistant"}
    if len(texts) == 1:
        entry["content"] = texts[0]
    elif texts:
        entry["content"] = _collapse([{"type": "text", "text": t} for t in texts if t])
    else:
        entry["content"] = None  # tool calls only
    if calls:
        entry["tool_calls"] = calls
    text = "".join(reasoning)
    if text:
        entry["reasoning_content"] = text
    if details:
        entry["reasoning_details"] = details
    if thought:
        entry["thought_signature"] = thought
    if message.name:
        entry["name"] = message.name
    return entry


def _inline_data(data: content_pb2.InlineData, path: str) -> dict[str, Any]:
    mime = data.mime_type.lower()
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime in IMAGE_TYPES:
        return {"type": "image_url", "image_url": {"url": parts.data_url(mime, data.data)}}
    audio_format = AUDIO_FORMATS.get(mime)
    if audio_format is not None:
        encoded = parts.base64_text(data.data)
        return {"type": "input_audio", "input_audio": {"data": encoded, "format": audio_format}}
    if mime in VIDEO_TYPES:
        return {"type": "video_url", "video_url": {"url": parts.data_url(mime, data.data)}}
    extension = DOCUMENT_TYPES.get(mime)
    if extension is not None:
        file = {"filename": f"document.{extension}", "file_data": parts.data_url(mime, data.data)}
        return {"type": "file", "file": file}
    if parts.is_text_mime(mime):
        return {"type": "text", "text": parts.decode_text(data.data, f"{path}.data")}
    raise _unsupported(f"{path}.mime_type", data.mime_type, "inline data")


def _file_uri(file: content_pb2.FileUri, path: str) -> dict[str, Any]:
    uri = file.uri
    if not uri:
        raise invalid_field(f"{path}.uri", "the URI is empty")
    if not parts.is_fetchable_url(uri):
        raise invalid_field(f"{path}.uri", "Venice takes http(s) and data: URLs")
    mime = file.mime_type.lower()
    if mime in VIDEO_TYPES or (not mime and _is_youtube(uri)):
        return {"type": "video_url", "video_url": {"url": uri}}
    if not mime or mime in IMAGE_TYPES:
        return {"type": "image_url", "image_url": {"url": uri}}
    if mime in DOCUMENT_TYPES or parts.is_text_mime(mime):
        return {"type": "file", "file": {"file_data": uri}}
    if mime in AUDIO_FORMATS:
        raise invalid_field(f"{path}.uri", "Venice takes audio inline only; send it as inline_data")
    raise _unsupported(f"{path}.mime_type", file.mime_type, "files by URL")


def _document(doc: content_pb2.Document, path: str) -> dict[str, Any]:
    mime = doc.mime_type.lower()
    if not mime:
        raise invalid_field(f"{path}.mime_type", "a document needs its MIME type")
    if not doc.data and not doc.uri:
        raise invalid_field(path, "a document needs `data` or `uri`")
    text_like = parts.is_text_mime(mime)
    if text_like and doc.data:
        return {"type": "text", "text": _document_text(doc, path)}
    extension = DOCUMENT_TYPES.get(mime)
    if extension is None and not text_like:
        raise _unsupported(f"{path}.mime_type", doc.mime_type, "documents")
    if doc.data:
        name = doc.title or f"document.{extension}"
        return {"type": "file", "file": {"filename": name, "file_data": parts.data_url(mime, doc.data)}}
    if not doc.uri.startswith(_HTTP):
        raise invalid_field(f"{path}.uri", "Venice fetches documents only by http(s) URL")
    file = {"file_data": doc.uri}
    if doc.title:
        file["filename"] = doc.title
    return {"type": "file", "file": file}


def _document_text(doc: content_pb2.Document, path: str) -> str:
    text = parts.decode_text(doc.data, f"{path}.data")
    return f"{doc.title}\n\n{text}" if doc.title else text


def _is_youtube(uri: str) -> bool:
    host = uri.split("://", 1)[-1].split("/", 1)[0].lower()
    return host in ("youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be")


def _unsupported(path: str, mime_type: str, what: str) -> GatewayError:
    return invalid_field(path, f"Venice cannot take {what} of type {mime_type or '(empty)'}")
