"""homa `CompleteRequest` -> OpenAI Chat Completions request body (`POST /chat/completions`).

Mapping decisions (also in docs/providers):
- Roles map 1:1 (system, developer, user, assistant, tool). A ROLE_TOOL message becomes one
  `{"role": "tool", "tool_call_id", "content"}` message per tool result, as Chat Completions wants.
  `ToolResult.is_error` has no OpenAI field; homa's contract already puts the failure in `content`.
- Reasoning parts of assistant messages are dropped: Chat Completions has no input field for them.
  OpenAI keeps its own reasoning server-side (it is never returned by this API), and sending the
  text back as assistant content would make the model treat its thoughts as said words. Callers
  who need reasoning round-trips use a provider whose API carries them. An assistant message that
  held only reasoning is omitted.
- Content is a plain string when a message is a single text part (smallest body, accepted by every
  OpenAI-compatible server), otherwise an array of typed parts.
- Images: InlineData -> `data:` URL, FileUri -> URL; detail maps to auto/low/high (unset = omitted,
  OpenAI's default is auto). Audio (wav/mp3) -> `input_audio`. PDFs -> `file` parts (`file_data`
  as a data: URL, or `file_id` for OpenAI file ids). Text documents (text/*, JSON, YAML, XML) are
  inlined as text, preceded by their title. Chat Completions cannot fetch documents by URL.
- `top_k` does not exist in OpenAI's API: INVALID_ARGUMENT rather than silently ignoring it.
  `reasoning.budget_tokens` and `reasoning.include` are Anthropic/Gemini controls with no Chat
  Completions equivalent and are ignored (so one request can fall back across providers).
- `tool_choice` AUTO/NONE and `parallel_tool_calls` are only sent with tools (OpenAI rejects them
  otherwise; without tools they mean nothing). Tool `strict` is sent only when true.
- `max_output_tokens` -> `max_completion_tokens` (the non-deprecated field, also needed by
  reasoning models). `user` is sent as `user`, which OpenAI still accepts and compatible servers
  understand.
- `provider_options.extra_body` is merged at the top level; fields the adapter sets win, and `stream`
  and `n` are dropped from it (they would change the protocol the adapter parses).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.openai import parts
from homa_server.providers.openai.validation import (
    is_valid_name,
    validate_messages,
    validate_tool_choice,
    validate_tools,
)

__all__ = ["build_chat_body", "tool_definitions"]

_ROLE = {
    content_pb2.ROLE_SYSTEM: "system",
    content_pb2.ROLE_DEVELOPER: "developer",
    content_pb2.ROLE_USER: "user",
}

_EFFORT = {
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}

_CHOICE = {
    content_pb2.ToolChoice.MODE_AUTO: "auto",
    content_pb2.ToolChoice.MODE_NONE: "none",
    content_pb2.ToolChoice.MODE_REQUIRED: "required",
}

_STREAM_OPTIONS = {"include_usage": True}
_MAX_STOP = 4
_DEFAULT_SCHEMA_NAME = "response"


def build_chat_body(request: chat_pb2.CompleteRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """Translate `request` into a Chat Completions body for `model`.

    Args:
        request: the homa request (StreamCompleteRequest is wire-identical; convert it first).
        model: the provider-side model id chosen by routing.
        stream: add `stream: true` and `stream_options.include_usage`.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    validate_tool_choice(request)
    if request.HasField("top_k"):
        raise invalid_field("top_k", "OpenAI does not support top_k sampling; leave it unset")

    body: dict[str, Any] = {"model": model, "messages": _messages(request.messages)}
    if request.tools:
        body["tools"] = tool_definitions(request.tools)
        choice = _tool_choice(request.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if request.HasField("parallel_tool_calls"):
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.HasField("response_format"):
        response_format = _response_format(request.response_format)
        if response_format is not None:
            body["response_format"] = response_format
    _sampling(request, body)
    if stream:
        body["stream"] = True
        body["stream_options"] = _STREAM_OPTIONS
    if request.provider_options.HasField("extra_body"):
        return _merge_extra(struct_to_dict(request.provider_options.extra_body), body, stream=stream)
    return body


def _merge_extra(extra: dict[str, Any], body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """Put `body` over `extra`. Fields that would change the wire protocol the adapter parses
    (`stream`, `n`) are dropped; `stream_options` extras (e.g. include_obfuscation) are kept on
    streams, with include_usage forced on."""
    extra.pop("stream", None)
    extra.pop("n", None)
    stream_options = extra.pop("stream_options", None)
    extra.update(body)
    if stream and isinstance(stream_options, dict):
        extra["stream_options"] = {**stream_options, **_STREAM_OPTIONS}
    return extra


def tool_definitions(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    """homa tools -> Chat Completions `tools` (type function)."""
    result = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        if tool.HasField("parameters"):
            function["parameters"] = cached_struct_to_dict(tool.parameters)
        if tool.strict:
            function["strict"] = True
        result.append({"type": "function", "function": function})
    return result


def _tool_choice(choice: content_pb2.ToolChoice) -> str | dict[str, Any] | None:
    if choice.mode == content_pb2.ToolChoice.MODE_NAMED:
        return {"type": "function", "function": {"name": choice.name}}
    return _CHOICE.get(choice.mode)


def _response_format(fmt: content_pb2.ResponseFormat) -> dict[str, Any] | None:
    kind = fmt.type
    if kind == content_pb2.ResponseFormat.TYPE_TEXT:
        return {"type": "text"}
    if kind == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if kind == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        if not fmt.HasField("json_schema"):
            raise invalid_field("response_format.json_schema", "TYPE_JSON_SCHEMA needs a schema")
        name = fmt.schema_name or _DEFAULT_SCHEMA_NAME
        if not is_valid_name(name):
            raise invalid_field(
                "response_format.schema_name", "must be 1-64 letters, digits, underscores or dashes"
            )
        schema: dict[str, Any] = {"name": name, "schema": cached_struct_to_dict(fmt.json_schema)}
        if fmt.strict:
            schema["strict"] = True
        return {"type": "json_schema", "json_schema": schema}
    return None


def _sampling(request: chat_pb2.CompleteRequest, body: dict[str, Any]) -> None:
    if request.HasField("temperature"):
        body["temperature"] = request.temperature
    if request.HasField("top_p"):
        body["top_p"] = request.top_p
    if request.HasField("max_output_tokens"):
        if request.max_output_tokens <= 0:
            raise invalid_field("max_output_tokens", "must be positive")
        body["max_completion_tokens"] = request.max_output_tokens
    if request.stop:
        if len(request.stop) > _MAX_STOP:
            raise invalid_field("stop", f"OpenAI accepts at most {_MAX_STOP} stop sequences")
        body["stop"] = list(request.stop)
    if request.HasField("seed"):
        body["seed"] = request.seed
    if request.HasField("presence_penalty"):
        body["presence_penalty"] = request.presence_penalty
    if request.HasField("frequency_penalty"):
        body["frequency_penalty"] = request.frequency_penalty
    effort = _EFFORT.get(request.reasoning.effort)
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.user:
        body["user"] = request.user


def _messages(messages: Iterable[content_pb2.Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role == content_pb2.ROLE_TOOL:
            for part in message.parts:
                result = part.tool_result
                out.append({"role": "tool", "tool_call_id": result.tool_call_id, "content": result.content})
            continue
        if role == content_pb2.ROLE_ASSISTANT:
            assistant = _assistant(message)
            if assistant is not None:
                out.append(assistant)
            continue
        entry: dict[str, Any] = {"role": _ROLE[role], "content": _content(message, i)}
        if message.name:
            entry["name"] = message.name
        out.append(entry)
    return out


def _content(message: content_pb2.Message, index: int) -> str | list[dict[str, Any]]:
    message_parts = message.parts
    if len(message_parts) == 1 and message_parts[0].WhichOneof("kind") == "text":
        return message_parts[0].text  # the common case: one plain string
    user = message.role == content_pb2.ROLE_USER
    content: list[dict[str, Any]] = []
    for j, part in enumerate(message_parts):
        kind = part.WhichOneof("kind")
        path = f"messages[{index}].parts[{j}]"
        if kind == "text":
            content.append({"type": "text", "text": part.text})
        elif kind == "document":
            content.append(_document(part.document, f"{path}.document", allow_files=user))
        elif kind == "inline_data":
            content.append(_inline_data(part.inline_data, f"{path}.inline_data"))
        else:  # file_uri (validation admits nothing else for these roles)
            content.append(_file_uri(part.file_uri, f"{path}.file_uri"))
    return content


def _assistant(message: content_pb2.Message) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        kind = part.WhichOneof("kind")
        if kind == "text":
            texts.append(part.text)
        elif kind == "tool_call":
            call = part.tool_call
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
            )
        # "reasoning": deliberately not sent (see module docstring).
    if not texts and not calls:
        return None
    entry: dict[str, Any] = {"role": "assistant"}
    if len(texts) == 1:
        entry["content"] = texts[0]
    elif texts:
        entry["content"] = [{"type": "text", "text": text} for text in texts]
    else:
        entry["content"] = None  # tool calls only; some compatible servers require the key
    if calls:
        entry["tool_calls"] = calls
    if message.name:
        entry["name"] = message.name
    return entry


def _inline_data(data: content_pb2.InlineData, path: str) -> dict[str, Any]:
    mime = data.mime_type
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    if mime.startswith("image/"):
        image: dict[str, Any] = {"url": parts.data_url(mime, data.data)}
        detail = parts.DETAIL.get(data.detail)
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    audio_format = parts.AUDIO_FORMATS.get(mime)
    if audio_format is not None:
        encoded = parts.base64_text(data.data)
        return {"type": "input_audio", "input_audio": {"data": encoded, "format": audio_format}}
    if mime == parts.PDF:
        return {
            "type": "file",
            "file": {"filename": parts.pdf_filename(""), "file_data": parts.data_url(mime, data.data)},
        }
    if parts.is_text_mime(mime):
        return {"type": "text", "text": parts.decode_text(data.data, f"{path}.data")}
    raise parts.unsupported_mime(f"{path}.mime_type", mime, "inline data")


def _file_uri(file: content_pb2.FileUri, path: str) -> dict[str, Any]:
    uri = file.uri
    if not uri:
        raise invalid_field(f"{path}.uri", "the URI is empty")
    if uri.startswith(parts.OPENAI_FILE_PREFIX):
        return {"type": "file", "file": {"file_id": uri}}
    if not parts.is_fetchable_url(uri):
        raise invalid_field(
            f"{path}.uri", "OpenAI takes http(s) and data: URLs or OpenAI file ids (file-...)"
        )
    mime = file.mime_type
    if mime and not mime.startswith("image/"):
        raise invalid_field(
            f"{path}.mime_type", f"Chat Completions fetches only images by URL, not {mime}; send it inline"
        )
    image: dict[str, Any] = {"url": uri}
    detail = parts.DETAIL.get(file.detail)
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _document(doc: content_pb2.Document, path: str, *, allow_files: bool) -> dict[str, Any]:
    mime = doc.mime_type
    if not mime:
        raise invalid_field(f"{path}.mime_type", "a document needs its MIME type")
    if not doc.data and not doc.uri:
        raise invalid_field(path, "a document needs `data` or `uri`")
    if parts.is_text_mime(mime):
        if not doc.data:
            raise invalid_field(f"{path}.uri", "Chat Completions cannot fetch documents by URL; send `data`")
        text = parts.decode_text(doc.data, f"{path}.data")
        return {"type": "text", "text": f"{doc.title}\n\n{text}" if doc.title else text}
    if mime != parts.PDF:
        raise parts.unsupported_mime(f"{path}.mime_type", mime, "documents")
    if not allow_files:
        raise invalid_field(path, "OpenAI accepts PDF documents only in ROLE_USER messages")
    if doc.data:
        file = {"filename": parts.pdf_filename(doc.title), "file_data": parts.data_url(mime, doc.data)}
        return {"type": "file", "file": file}
    if doc.uri.startswith(parts.OPENAI_FILE_PREFIX):
        return {"type": "file", "file": {"file_id": doc.uri}}
    raise invalid_field(f"{path}.uri", "Chat Completions cannot fetch documents by URL; send `data`")
