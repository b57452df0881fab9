"""Request builders: a fluent `ChatRequestBuilder` and small helpers for messages, parts and tools.

The builder only assembles protobuf messages; it performs the cheap local checks that catch
programming mistakes early (`ValueError`/`TypeError`) and leaves request validation to the gateway
(which answers INVALID_ARGUMENT with field violations).

    request = (
        ChatRequestBuilder("mock/echo")
        .system("You are terse.")
        .user("Hello")
        .temperature(0.2)
        .max_output_tokens(100)
        .build()
    )
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from google.protobuf import duration_pb2, struct_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2

# An image given to `user(..., images=[...])`: an https:// (or provider) URI, a `data:` URL, raw
# bytes (PNG/JPEG/GIF/WEBP are recognised), a local file path, or a ready `Part`.
ImageInput = str | bytes | Path | content_pb2.Part

_T = TypeVar("_T")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

_DETAIL = {
    "auto": content_pb2.IMAGE_DETAIL_AUTO,
    "low": content_pb2.IMAGE_DETAIL_LOW,
    "high": content_pb2.IMAGE_DETAIL_HIGH,
}

_TOOL_CHOICE_MODES = {
    "auto": content_pb2.ToolChoice.MODE_AUTO,
    "none": content_pb2.ToolChoice.MODE_NONE,
    "required": content_pb2.ToolChoice.MODE_REQUIRED,
}

_CACHE_MODES = {
    "on": chat_pb2.CACHE_MODE_ON,
    "off": chat_pb2.CACHE_MODE_OFF,
    "read_only": chat_pb2.CACHE_MODE_READ_ONLY,
    "write_only": chat_pb2.CACHE_MODE_WRITE_ONLY,
}

_PRIORITIES = {
    "low": chat_pb2.PRIORITY_LOW,
    "normal": chat_pb2.PRIORITY_NORMAL,
    "high": chat_pb2.PRIORITY_HIGH,
}

_EFFORTS = {
    "minimal": chat_pb2.REASONING_EFFORT_MINIMAL,
    "low": chat_pb2.REASONING_EFFORT_LOW,
    "medium": chat_pb2.REASONING_EFFORT_MEDIUM,
    "high": chat_pb2.REASONING_EFFORT_HIGH,
}


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """A `google.protobuf.Struct` from a JSON-like mapping (numbers become doubles)."""
    struct = struct_pb2.Struct()
    struct.update(dict(value))
    return struct


def duration(seconds: float) -> duration_pb2.Duration:
    """A `google.protobuf.Duration` of `seconds` (must not be negative)."""
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    result = duration_pb2.Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result


def _sniff_mime(data: bytes) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError(
        "cannot tell the image type of these bytes; pass a Part from image_part(..., mime_type=)"
    )


def _detail(detail: str | None) -> content_pb2.ImageDetail.ValueType:
    if detail is None:
        return content_pb2.IMAGE_DETAIL_UNSPECIFIED
    try:
        return _DETAIL[detail]
    except KeyError:
        raise ValueError(f"image detail must be one of {sorted(_DETAIL)}, not {detail!r}") from None


def text_part(text: str) -> content_pb2.Part:
    """A text part."""
    return content_pb2.Part(text=text)


def image_part(
    source: ImageInput, *, mime_type: str | None = None, detail: str | None = None
) -> content_pb2.Part:
    """An image part.

    Args:
        source: a URI (`https://...` or a provider file URI) sent by reference; a `data:` URL or raw
            bytes sent inline; a `pathlib.Path` read and sent inline; or a ready `Part` (returned as is).
        mime_type: the media type; guessed from the bytes, the data URL or the file name when omitted.
        detail: "auto", "low" or "high" (vision detail hint).

    Raises:
        ValueError: the media type cannot be determined, or a malformed `data:` URL.
    """
    if isinstance(source, content_pb2.Part):
        return source
    hint = _detail(detail)
    if isinstance(source, Path):
        data = source.read_bytes()
        mime = mime_type or mimetypes.guess_type(source.name)[0] or _sniff_mime(data)
        return content_pb2.Part(inline_data=content_pb2.InlineData(mime_type=mime, data=data, detail=hint))
    if isinstance(source, bytes):
        mime = mime_type or _sniff_mime(source)
        return content_pb2.Part(inline_data=content_pb2.InlineData(mime_type=mime, data=source, detail=hint))
    if source.startswith("data:"):
        header, sep, payload = source.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("only base64 data: URLs are supported")
        mime = mime_type or header.removeprefix("data:").removesuffix(";base64")
        return content_pb2.Part(
            inline_data=content_pb2.InlineData(mime_type=mime, data=base64.b64decode(payload), detail=hint)
        )
    return content_pb2.Part(file_uri=content_pb2.FileUri(uri=source, mime_type=mime_type or "", detail=hint))


def _message(
    role: content_pb2.Role.ValueType, parts: Iterable[content_pb2.Part], name: str = ""
) -> content_pb2.Message:
    return content_pb2.Message(role=role, parts=list(parts), name=name)


def system_message(text: str) -> content_pb2.Message:
    """A system message."""
    return _message(content_pb2.ROLE_SYSTEM, [text_part(text)])


def developer_message(text: str) -> content_pb2.Message:
    """A developer message (OpenAI "developer" role; other providers treat it as system)."""
    return _message(content_pb2.ROLE_DEVELOPER, [text_part(text)])


def user_message(text: str = "", *, images: Sequence[ImageInput] = (), name: str = "") -> content_pb2.Message:
    """A user message: the text (when not empty) followed by the images, in order.

    Raises:
        ValueError: neither text nor images, or an image whose type cannot be determined.
    """
    parts = [text_part(text)] if text else []
    parts.extend(image_part(image) for image in images)
    if not parts:
        raise ValueError("a user message needs text or images")
    return _message(content_pb2.ROLE_USER, parts, name)


def tool_call(name: str, arguments: Mapping[str, Any] | str, call_id: str) -> content_pb2.ToolCall:
    """A tool call (for replaying an assistant turn); `arguments` as a mapping or JSON text."""
    text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments), separators=(",", ":"))
    return content_pb2.ToolCall(id=call_id, name=name, arguments_json=text)


def assistant_message(
    text: str = "", *, tool_calls: Sequence[content_pb2.ToolCall] = ()
) -> content_pb2.Message:
    """An assistant message (earlier turns of a conversation): text, then tool calls.

    Raises:
        ValueError: neither text nor tool calls.
    """
    parts = [text_part(text)] if text else []
    parts.extend(content_pb2.Part(tool_call=call) for call in tool_calls)
    if not parts:
        raise ValueError("an assistant message needs text or tool calls")
    return _message(content_pb2.ROLE_ASSISTANT, parts)


def tool_result(
    call_id: str, content: Any, *, name: str = "", is_error: bool = False
) -> content_pb2.ToolResult:
    """The answer to tool call `call_id`; non-string content is serialised as JSON.

    Raises:
        ValueError: empty `call_id`.
        TypeError: content that is neither text nor JSON-serialisable.
    """
    if not call_id:
        raise ValueError("call_id is required (the ToolCall.id being answered)")
    text = content if isinstance(content, str) else json.dumps(content)
    return content_pb2.ToolResult(tool_call_id=call_id, name=name, content=text, is_error=is_error)


def tool_result_message(results: Iterable[content_pb2.ToolResult]) -> content_pb2.Message:
    """A tool message carrying `results` (one part each)."""
    return _message(content_pb2.ROLE_TOOL, [content_pb2.Part(tool_result=r) for r in results])


def tool(
    name: str, description: str, parameters: Mapping[str, Any] | None = None, *, strict: bool = False
) -> content_pb2.Tool:
    """A function tool.

    Args:
        name: function name (letters, digits, `_`, `-`; at most 64 characters).
        description: what the function does; the model uses it to decide when to call it.
        parameters: JSON Schema of the arguments object; defaults to an object without properties.
        strict: ask the provider to enforce the schema exactly.
    """
    schema = dict(parameters) if parameters is not None else {"type": "object", "properties": {}}
    return content_pb2.Tool(name=name, description=description, parameters=to_struct(schema), strict=strict)


def tool_choice(choice: str | content_pb2.ToolChoice) -> content_pb2.ToolChoice:
    """A tool-choice policy: "auto", "none", "required", or the name of the one tool to call."""
    if isinstance(choice, content_pb2.ToolChoice):
        return choice
    mode = _TOOL_CHOICE_MODES.get(choice)
    if mode is not None:
        return content_pb2.ToolChoice(mode=mode)
    if not choice:
        raise ValueError("tool_choice must be auto, none, required or a tool name")
    return content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name=choice)


def _lookup(table: Mapping[str, _T], value: str, what: str) -> _T:
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"{what} must be one of {sorted(table)}, not {value!r}") from None


class ChatRequestBuilder:
    """Fluent builder of `CompleteRequest` / `StreamCompleteRequest`.

    Every method returns the builder; `build()` returns a fresh copy each time, so one builder can
    serve as a template for several calls.
    """

    def __init__(self, model: str = "") -> None:
        self._request = chat_pb2.CompleteRequest(model=model)

    # -- model and messages ------------------------------------------------------------------

    def model(self, model: str) -> Self:
        """Model: an alias, "provider/model", or a model known to one provider ("" = gateway default)."""
        self._request.model = model
        return self

    def message(self, message: content_pb2.Message) -> Self:
        """Append a ready message."""
        self._request.messages.append(message)
        return self

    def messages(self, messages: Iterable[content_pb2.Message]) -> Self:
        """Append ready messages (e.g. history), in order."""
        self._request.messages.extend(messages)
        return self

    def system(self, text: str) -> Self:
        """Append a system message."""
        return self.message(system_message(text))

    def developer(self, text: str) -> Self:
        """Append a developer message."""
        return self.message(developer_message(text))

    def user(self, text: str = "", *, images: Sequence[ImageInput] = (), name: str = "") -> Self:
        """Append a user message; see `user_message`."""
        return self.message(user_message(text, images=images, name=name))

    def assistant(self, text: str = "", *, tool_calls: Sequence[content_pb2.ToolCall] = ()) -> Self:
        """Append an assistant message (an earlier turn); see `assistant_message`."""
        return self.message(assistant_message(text, tool_calls=tool_calls))

    def tool_result(self, call_id: str, content: Any, *, name: str = "", is_error: bool = False) -> Self:
        """Append the result of tool call `call_id`.

        Consecutive results share one tool message, which is how the answers to the several tool
        calls of one assistant turn are sent.
        """
        result = tool_result(call_id, content, name=name, is_error=is_error)
        messages = self._request.messages
        if messages and messages[-1].role == content_pb2.ROLE_TOOL:
            messages[-1].parts.add(tool_result=result)
        else:
            messages.append(tool_result_message([result]))
        return self

    # -- tools and output format --------------------------------------------------------------

    def tool(
        self,
        name_or_tool: str | content_pb2.Tool,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
    ) -> Self:
        """Offer a tool: a ready `Tool`, or name, description and JSON Schema parameters."""
        if isinstance(name_or_tool, content_pb2.Tool):
            self._request.tools.append(name_or_tool)
        else:
            self._request.tools.append(tool(name_or_tool, description, parameters, strict=strict))
        return self

    def tools(self, tools: Iterable[content_pb2.Tool]) -> Self:
        """Offer several ready tools."""
        self._request.tools.extend(tools)
        return self

    def tool_choice(self, choice: str | content_pb2.ToolChoice) -> Self:
        """Tool-choice policy: "auto", "none", "required" or a tool name; see `tool_choice()`."""
        self._request.tool_choice.CopyFrom(tool_choice(choice))
        return self

    def parallel_tool_calls(self, allowed: bool = True) -> Self:
        """Allow (or forbid) several tool calls in one turn."""
        self._request.parallel_tool_calls = allowed
        return self

    def text_output(self) -> Self:
        """Plain text output (the default)."""
        self._request.response_format.Clear()
        self._request.response_format.type = content_pb2.ResponseFormat.TYPE_TEXT
        return self

    def json_object(self) -> Self:
        """Any valid JSON object as output."""
        self._request.response_format.Clear()
        self._request.response_format.type = content_pb2.ResponseFormat.TYPE_JSON_OBJECT
        return self

    def json_schema(self, name: str, schema: Mapping[str, Any], *, strict: bool = True) -> Self:
        """JSON output matching `schema` (a JSON Schema mapping) named `name`."""
        if not name:
            raise ValueError("a JSON schema needs a name")
        self._request.response_format.CopyFrom(
            content_pb2.ResponseFormat(
                type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
                schema_name=name,
                json_schema=to_struct(schema),
                strict=strict,
            )
        )
        return self

    # -- sampling ------------------------------------------------------------------------------

    def temperature(self, value: float) -> Self:
        """Sampling temperature (0-2)."""
        self._request.temperature = value
        return self

    def top_p(self, value: float) -> Self:
        """Nucleus sampling, in (0, 1]."""
        self._request.top_p = value
        return self

    def top_k(self, value: int) -> Self:
        """Top-k sampling (providers that support it)."""
        self._request.top_k = value
        return self

    def max_output_tokens(self, value: int) -> Self:
        """Maximum tokens to generate."""
        self._request.max_output_tokens = value
        return self

    def stop(self, *sequences: str) -> Self:
        """Stop sequences (replaces earlier ones)."""
        del self._request.stop[:]
        self._request.stop.extend(sequences)
        return self

    def seed(self, value: int) -> Self:
        """Seed for deterministic sampling where supported."""
        self._request.seed = value
        return self

    def presence_penalty(self, value: float) -> Self:
        """Presence penalty (-2 to 2)."""
        self._request.presence_penalty = value
        return self

    def frequency_penalty(self, value: float) -> Self:
        """Frequency penalty (-2 to 2)."""
        self._request.frequency_penalty = value
        return self

    def reasoning(self, effort: str | None = None, *, budget_tokens: int = 0, include: bool = False) -> Self:
        """Reasoning controls: effort ("minimal", "low", "medium", "high"), token budget, include."""
        options = chat_pb2.ReasoningOptions(budget_tokens=budget_tokens, include=include)
        if effort is not None:
            options.effort = _lookup(_EFFORTS, effort, "reasoning effort")
        self._request.reasoning.CopyFrom(options)
        return self

    # -- gateway behaviour ---------------------------------------------------------------------

    def fallback(self, *models: str) -> Self:
        """Models to try in order when the primary fails before the first chunk (replaces earlier)."""
        del self._request.options.fallback_models[:]
        self._request.options.fallback_models.extend(models)
        return self

    def timeout(self, seconds: float) -> Self:
        """Gateway-side time budget (`options.timeout`); the gRPC deadline still applies when shorter."""
        self._request.options.timeout.CopyFrom(duration(seconds))
        return self

    def first_token_timeout(self, seconds: float) -> Self:
        """Time allowed until the first streamed token (`options.first_token_timeout`)."""
        self._request.options.first_token_timeout.CopyFrom(duration(seconds))
        return self

    def cache(self, mode: str, *, max_age: float | None = None, nondeterministic: bool = False) -> Self:
        """Response cache mode ("on", "off", "read_only", "write_only"), oldest accepted answer."""
        options = self._request.options
        options.cache = _lookup(_CACHE_MODES, mode, "cache mode")
        options.cache_nondeterministic = nondeterministic
        if max_age is not None:
            options.cache_max_age.CopyFrom(duration(max_age))
        return self

    def priority(self, priority: str) -> Self:
        """Scheduling priority: "low", "normal" or "high"."""
        self._request.options.priority = _lookup(_PRIORITIES, priority, "priority")
        return self

    def conversation(self, conversation_id: str) -> Self:
        """Server-side conversation to load history from and append this turn to."""
        self._request.conversation_id = conversation_id
        return self

    def labels(self, **labels: str) -> Self:
        """Caller labels recorded with usage (`metadata`; never sent to the provider)."""
        self._request.metadata.update(labels)
        return self

    def end_user(self, user: str) -> Self:
        """End-user identifier passed to providers for abuse monitoring (`user`)."""
        self._request.user = user
        return self

    def extra_body(self, extra: Mapping[str, Any]) -> Self:
        """Vendor-specific fields merged into the upstream request (`provider_options.extra_body`)."""
        self._request.provider_options.extra_body.update(dict(extra))
        return self

    # -- results -------------------------------------------------------------------------------

    def build(self) -> chat_pb2.CompleteRequest:
        """A new `CompleteRequest` with everything set so far."""
        request = chat_pb2.CompleteRequest()
        request.CopyFrom(self._request)
        return request

    def build_stream(self) -> chat_pb2.StreamCompleteRequest:
        """A new `StreamCompleteRequest` (wire-identical to `build()`)."""
        return chat_pb2.StreamCompleteRequest.FromString(self._request.SerializeToString())

    def build_count_tokens(self) -> chat_pb2.CountTokensRequest:
        """A `CountTokensRequest` for the model, messages and tools set so far."""
        return chat_pb2.CountTokensRequest(
            model=self._request.model, messages=list(self._request.messages), tools=list(self._request.tools)
        )

    def build_converse_start(self) -> chat_pb2.ConverseStart:
        """A `ConverseStart` from the model, messages, tools, tool choice, temperature and token limit."""
        request = self._request
        start = chat_pb2.ConverseStart(
            model=request.model,
            messages=list(request.messages),
            tools=list(request.tools),
            tool_choice=request.tool_choice,
            conversation_id=request.conversation_id,
        )
        if request.HasField("max_output_tokens"):
            start.max_output_tokens = request.max_output_tokens
        if request.HasField("temperature"):
            start.temperature = request.temperature
        return start
