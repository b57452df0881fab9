"""homa messages and tools -> Responses API input items, for `POST /responses/input_tokens`.

OpenAI counts tokens only through the Responses API, whose input format differs from Chat
Completions: typed content parts (`input_text`, `input_image`, `input_file`), tool calls and results
as their own items (`function_call`, `function_call_output`), and flat function tool definitions.
The same homa rules apply as for chat (shared validation); reasoning parts are dropped for the
same reason (no round-trippable OpenAI reasoning item can be rebuilt from them). The Responses API
has no audio input part, so audio is rejected here. It can fetch PDFs by URL (`file_url`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict
from homa_server.providers.openai import parts
from homa_server.providers.openai.validation import validate_messages, validate_tools

__all__ = ["build_input_tokens_body"]

_ROLE = {
    content_pb2.ROLE_SYSTEM: "system",
    content_pb2.ROLE_DEVELOPER: "developer",
    content_pb2.ROLE_USER: "user",
}


def build_input_tokens_body(request: chat_pb2.CountTokensRequest, model: str) -> dict[str, Any]:
    """Translate a CountTokensRequest into a `TokenCountsBody` for `model`.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    body: dict[str, Any] = {"model": model, "input": _items(request.messages)}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": cached_struct_to_dict(tool.parameters) if tool.HasField("parameters") else None,
                "strict": tool.strict,
            }
            for tool in request.tools
        ]
    return body


def _items(messages: Iterable[content_pb2.Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role == content_pb2.ROLE_TOOL:
            for part in message.parts:
                result = part.tool_result
                items.append(
                    {"type": "function_call_output", "call_id": result.tool_call_id, "output": result.content}
                )
        elif role == content_pb2.ROLE_ASSISTANT:
            texts = [part.text for part in message.parts if part.WhichOneof("kind") == "text"]
            if texts:
                items.append({"role": "assistant", "content": "".join(texts)})
            for part in message.parts:
                if part.WhichOneof("kind") == "tool_call":
                    call = part.tool_call
                    items.append(
                        {
                            "type": "function_call",
                            "call_id": call.id,
                            "name": call.name,
                            "arguments": call.arguments_json,
                        }
                    )
        else:
            items.append({"role": _ROLE[role], "content": _content(message, i)})
    return items


def _content(message: content_pb2.Message, index: int) -> str | list[dict[str, Any]]:
    message_parts = message.parts
    if len(message_parts) == 1 and message_parts[0].WhichOneof("kind") == "text":
        return message_parts[0].text
    user = message.role == content_pb2.ROLE_USER
    content: list[dict[str, Any]] = []
    for j, part in enumerate(message_parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            content.append({"type": "input_text", "text": part.text})
        elif kind == "document":
            content.append(_document(part.document, f"{path}.document", allow_files=user))
        elif kind == "inline_data":
            content.append(_inline_data(part.inline_data, f"{path}.inline_data"))
        else:
            content.append(_file_uri(part.file_uri, f"{path}.file_uri"))
    return content


def _image(detail: int, **source: str) -> dict[str, Any]:
    return {"type": "input_image", "detail": parts.DETAIL.get(detail, "auto"), **source}


def _inline_data(data: content_pb2.InlineData, path: str) -> dict[str, Any]:
    mime = data.mime_type
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime.startswith("image/"):
        return _image(data.detail, image_url=parts.data_url(mime, data.data))
    if mime == parts.PDF:
        return {
            "type": "input_file",
            "filename": parts.pdf_filename(""),
            "file_data": parts.data_url(mime, data.data),
        }
    if parts.is_text_mime(mime):
        return {"type": "input_text", "text": parts.decode_text(data.data, f"{path}.data")}
    raise parts.unsupported_mime(f"{path}.mime_type", mime, "inline data (Responses API)")


def _file_uri(file: content_pb2.FileUri, path: str) -> dict[str, Any]:
    uri = file.uri
    mime = file.mime_type
    if not uri:
        raise invalid_field(f"{path}.uri", "the URI is empty")
    if uri.startswith(parts.OPENAI_FILE_PREFIX):
        if mime.startswith("image/"):
            return _image(file.detail, file_id=uri)
        return {"type": "input_file", "file_id": uri}
    if not parts.is_fetchable_url(uri):
        raise invalid_field(
            f"{path}.uri", "OpenAI takes http(s) and data: URLs or OpenAI file ids (file-...)"
        )
    if not mime or mime.startswith("image/"):
        return _image(file.detail, image_url=uri)
    return {"type": "input_file", "file_url": uri}


def _document(doc: content_pb2.Document, path: str, *, allow_files: bool) -> dict[str, Any]:
    mime = doc.mime_type
    if not mime:
        raise invalid_field(f"{path}.mime_type", "a document needs its MIME type")
    if not doc.data and not doc.uri:
        raise invalid_field(path, "a document needs `data` or `uri`")
    if parts.is_text_mime(mime):
        if not doc.data:
            raise invalid_field(f"{path}.uri", "text documents must be sent inline as `data`")
        text = parts.decode_text(doc.data, f"{path}.data")
        return {"type": "input_text", "text": f"{doc.title}\n\n{text}" if doc.title else text}
    if mime != parts.PDF:
        raise parts.unsupported_mime(f"{path}.mime_type", mime, "documents")
    if not allow_files:
        raise invalid_field(path, "OpenAI accepts PDF documents only in ROLE_USER messages")
    if doc.data:
        return {
            "type": "input_file",
            "filename": parts.pdf_filename(doc.title),
            "file_data": parts.data_url(mime, doc.data),
        }
    if doc.uri.startswith(parts.OPENAI_FILE_PREFIX):
        return {"type": "input_file", "file_id": doc.uri}
    return {"type": "input_file", "file_url": doc.uri}
