"""Azure-specific checks of a homa chat request, run before the body is built or anything is sent.

The OpenAI builder (reused for the body) already checks message structure, tool names and tool
choice. What differs on Azure is checked here, with Azure wording and the caller's field paths:

- sampling ranges as the Azure spec states them (temperature 0-2, top_p 0-1, penalties -2..2),
  `top_k` (no such field), at most 4 stop sequences, at most 128 tools;
- `reasoning.effort` only where the api-version has `reasoning_effort`, and only its values;
- media: images (inline or http(s)/data: URL) and text documents everywhere; wav/mp3 audio only
  on preview api-versions; no PDFs, other binary documents or uploaded-file ids (chat completions
  has no file input on Azure);
- `provider_options.extra_body` keys must be fields of the api-version's spec, and not ones the
  adapter controls itself.

Every failure is `errors.invalid_field` (INVALID_ARGUMENT, reason INVALID_REQUEST).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers.azure_openai.api_versions import ApiSurface
from homa_server.providers.openai import parts

__all__ = ["EFFORTS", "check_request"]

EFFORTS: dict[int, str] = {
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}

_MAX_STOP = 4
_MAX_TOOLS = 128
# Body fields the adapter owns: callers choose them through homa fields (or not at all).
_CONTROLLED = {
    "messages": "set from `messages`",
    "model": "Azure picks the model by deployment; use the homa model name (see options.deployments)",
    "stream": "chosen by the RPC (Complete or StreamComplete)",
    "stream_options": "set by the adapter",
    "n": "the gateway reads a single choice",
}
_FILE_ID_PREFIXES = ("file-", "assistant-")


def check_request(request: chat_pb2.CompleteRequest, surface: ApiSurface, api_version: str) -> None:
    """Raise INVALID_ARGUMENT for the first thing Azure (at `api_version`) cannot express.

    Args:
        request: the homa request.
        surface: the spec surface of `api_version`.
        api_version: the configured version, quoted in messages.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the field.
    """
    _sampling(request)
    effort = EFFORTS.get(request.reasoning.effort)
    if effort is not None and effort not in surface.reasoning_efforts:
        if surface.reasoning_efforts:
            allowed = ", ".join(sorted(surface.reasoning_efforts))
            raise invalid_field("reasoning.effort", f"api-version {api_version} accepts only {allowed}")
        raise invalid_field(
            "reasoning.effort",
            f"api-version {api_version} has no reasoning_effort; use a preview api-version "
            "(2025-04-01-preview or later)",
        )
    if len(request.tools) > _MAX_TOOLS:
        raise invalid_field("tools", f"Azure OpenAI accepts at most {_MAX_TOOLS} tools")
    _media(request.messages, surface, api_version)
    if request.provider_options.HasField("extra_body"):
        for key in request.provider_options.extra_body.fields:
            path = f"provider_options.extra_body.{key}"
            why = _CONTROLLED.get(key)
            if why is not None:
                raise invalid_field(path, f"cannot be set here: {why}")
            if key not in surface.fields:
                raise invalid_field(path, f"not a chat completions field of Azure api-version {api_version}")


def _sampling(request: chat_pb2.CompleteRequest) -> None:
    if request.HasField("top_k"):
        raise invalid_field("top_k", "Azure OpenAI has no top_k sampling; leave it unset")
    _range(request, "temperature", 0.0, 2.0)
    _range(request, "top_p", 0.0, 1.0)
    _range(request, "presence_penalty", -2.0, 2.0)
    _range(request, "frequency_penalty", -2.0, 2.0)
    if len(request.stop) > _MAX_STOP:
        raise invalid_field("stop", f"Azure OpenAI accepts at most {_MAX_STOP} stop sequences")


def _range(request: chat_pb2.CompleteRequest, name: str, low: float, high: float) -> None:
    if request.HasField(name):  # type: ignore[arg-type]  # the names are optional scalar fields
        value = getattr(request, name)
        if not math.isfinite(value) or not low <= value <= high:
            raise invalid_field(name, f"must be between {low:g} and {high:g}")


def _media(messages: Sequence[content_pb2.Message], surface: ApiSurface, api_version: str) -> None:
    for i, message in enumerate(messages):
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind == "inline_data":
                _inline(part.inline_data, f"messages[{i}].parts[{j}].inline_data", surface, api_version)
            elif kind == "file_uri":
                _file_uri(part.file_uri, f"messages[{i}].parts[{j}].file_uri")
            elif kind == "document":
                _document(part.document, f"messages[{i}].parts[{j}].document")


def _inline(data: content_pb2.InlineData, path: str, surface: ApiSurface, api_version: str) -> None:
    mime = data.mime_type
    if mime.startswith("image/") or parts.is_text_mime(mime):
        return
    if mime in parts.AUDIO_FORMATS:
        if not surface.audio_input:
            raise invalid_field(
                f"{path}.mime_type",
                f"audio input needs a preview api-version (2025-04-01-preview or later), not {api_version}",
            )
        return
    if mime == parts.PDF:
        raise invalid_field(f"{path}.mime_type", _NO_FILES)
    shown = mime or "(empty)"
    raise invalid_field(
        f"{path}.mime_type",
        f"Azure OpenAI chat completions cannot take inline data of type {shown} "
        "(images, text and, on preview api-versions, wav/mp3 audio are accepted)",
    )


def _file_uri(file: content_pb2.FileUri, path: str) -> None:
    uri = file.uri
    if uri.startswith(_FILE_ID_PREFIXES):
        raise invalid_field(f"{path}.uri", "Azure OpenAI chat completions cannot reference uploaded files")
    if uri and not parts.is_fetchable_url(uri):
        raise invalid_field(f"{path}.uri", "Azure OpenAI takes images as http(s) or data: URLs")
    if file.mime_type and not file.mime_type.startswith("image/"):
        raise invalid_field(
            f"{path}.mime_type", f"Azure OpenAI fetches only images by URL, not {file.mime_type}"
        )


def _document(doc: content_pb2.Document, path: str) -> None:
    mime = doc.mime_type
    if not mime or parts.is_text_mime(mime):
        return  # text documents are inlined by the builder, which also reports a missing type
    if mime == parts.PDF:
        raise invalid_field(f"{path}.mime_type", _NO_FILES)
    raise invalid_field(f"{path}.mime_type", f"Azure OpenAI cannot take documents of type {mime}")


_NO_FILES = (
    "Azure OpenAI chat completions take no PDF or file input; extract the text and send it as a text document"
)
