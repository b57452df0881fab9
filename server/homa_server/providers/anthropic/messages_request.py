"""homa `CompleteRequest` -> Anthropic Messages request body (`POST /v1/messages`), and the
`count_tokens` body.

Mapping decisions (also in docs/providers/anthropic.md):
- `max_tokens` is required by Anthropic: `max_output_tokens`, else the `default_max_tokens` option
  (plus the thinking budget, because Anthropic counts thinking inside `max_tokens`).
- Reasoning: `budget_tokens` > 0 -> `thinking: {type: enabled, budget_tokens}` (Anthropic's minimum
  is 1024 and it must stay below `max_tokens`); otherwise `include` -> `thinking: {type: adaptive}`
  (the model decides how much to think). `effort` -> `output_config.effort` (MINIMAL maps to
  Anthropic's lowest level, "low").
- Structured output: TYPE_JSON_SCHEMA -> native `output_config.format {type: json_schema, schema}`
  (constrained decoding; the answer arrives as JSON text). Anthropic has no "any JSON object" mode,
  so TYPE_JSON_OBJECT is INVALID_ARGUMENT. `schema_name` has no Anthropic field.
- Tool choice: AUTO -> auto, NONE -> none, REQUIRED -> any, NAMED -> tool{name}; sent only with
  tools. `parallel_tool_calls=false` -> `disable_parallel_tool_use: true` (on an auto choice when
  none was given; meaningless with none).
- Sampling: temperature (Anthropic: 0-1), top_p, top_k, stop -> stop_sequences. seed,
  presence_penalty and frequency_penalty do not exist in the Messages API: INVALID_ARGUMENT.
  With thinking on, Anthropic's documented limits are checked up front (temperature 1 only, no
  top_k, top_p >= 0.95, tool choice auto or none), each INVALID_ARGUMENT naming the field.
- The `prompt_cache` option ("5m" or "1h") adds top-level `cache_control`, which makes Anthropic
  cache the prompt up to its last cacheable block.
- `user` -> `metadata.user_id`. `provider_options.extra_body` is merged at the top level (for
  `service_tier`, `cache_control`, ...); fields the adapter sets win, `stream` is never taken
  from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.anthropic.content import translate_messages
from homa_server.providers.anthropic.options import AnthropicOptions
from homa_server.providers.anthropic.validation import (
    validate_messages,
    validate_tool_choice,
    validate_tools,
)

__all__ = ["build_count_tokens_body", "build_messages_body", "tool_definitions"]

_EFFORT = {
    chat_pb2.REASONING_EFFORT_MINIMAL: "low",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}
_CHOICE: dict[int, dict[str, Any]] = {
    content_pb2.ToolChoice.MODE_AUTO: {"type": "auto"},
    content_pb2.ToolChoice.MODE_NONE: {"type": "none"},
    content_pb2.ToolChoice.MODE_REQUIRED: {"type": "any"},
}
_MIN_THINKING_BUDGET = 1024
_MIN_THINKING_TOP_P = 0.95
_MAX_USER_ID = 512
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_UNSUPPORTED: tuple[Literal["seed", "presence_penalty", "frequency_penalty"], ...] = (
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


def build_messages_body(
    request: chat_pb2.CompleteRequest, model: str, options: AnthropicOptions, *, stream: bool
) -> dict[str, Any]:
    """Translate `request` into a Messages API body for `model`.

    Args:
        request: the homa request (StreamCompleteRequest is wire-identical; convert it first).
        model: the provider-side model id chosen by routing.
        options: the provider's validated options.
        stream: add `stream: true`.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    validate_tool_choice(request)
    for name in _UNSUPPORTED:
        if request.HasField(name):
            raise invalid_field(name, f"Anthropic does not support {name}; leave it unset")

    translated = translate_messages(request.messages, document_citations=options.document_citations)
    body: dict[str, Any] = {"model": model, "messages": translated.messages}
    if translated.system:
        body["system"] = translated.system
    thinking_budget = _reasoning(request.reasoning, body)
    if "thinking" in body:
        _check_thinking_compatible(request)
    body["max_tokens"] = _max_tokens(request, options, thinking_budget)
    if request.tools:
        body["tools"] = tool_definitions(request.tools)
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    if request.HasField("response_format"):
        _response_format(request.response_format, body)
    _sampling(request, body)
    if options.prompt_cache != "off":
        body["cache_control"] = {"type": "ephemeral", "ttl": options.prompt_cache}
    if stream:
        body["stream"] = True
    if request.provider_options.HasField("extra_body"):
        extra = struct_to_dict(request.provider_options.extra_body)
        extra.pop("stream", None)
        extra.update(body)
        return extra
    return body


def build_count_tokens_body(
    request: chat_pb2.CountTokensRequest, model: str, options: AnthropicOptions
) -> dict[str, Any]:
    """The `POST /v1/messages/count_tokens` body: model, system, messages and tools.

    Raises:
        GatewayError: INVALID_ARGUMENT as `build_messages_body`.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    translated = translate_messages(request.messages, document_citations=options.document_citations)
    body: dict[str, Any] = {"model": model, "messages": translated.messages}
    if translated.system:
        body["system"] = translated.system
    if request.tools:
        body["tools"] = tool_definitions(request.tools)
    return body


def tool_definitions(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    """homa tools -> Anthropic custom tools (`name`, `description`, `input_schema`, `strict`).

    Raises:
        GatewayError: INVALID_ARGUMENT when a parameter schema is not an object schema.
    """
    result = []
    for i, tool in enumerate(tools):
        definition: dict[str, Any] = {"name": tool.name, "input_schema": _input_schema(tool, i)}
        if tool.description:
            definition["description"] = tool.description
        if tool.strict:
            definition["strict"] = True
        result.append(definition)
    return result


def _input_schema(tool: content_pb2.Tool, index: int) -> dict[str, Any]:
    if not tool.HasField("parameters"):
        return _EMPTY_SCHEMA
    schema = cached_struct_to_dict(tool.parameters)
    kind = schema.get("type")
    if kind == "object":
        return schema
    if kind is None:
        # A schema without `type` that lists properties describes an object; Anthropic insists on
        # the explicit type. The cached dict is shared, so extend a copy.
        return {**schema, "type": "object"}
    raise invalid_field(f"tools[{index}].parameters", "Anthropic needs an object schema (type: object)")


def _tool_choice(request: chat_pb2.CompleteRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice.mode == content_pb2.ToolChoice.MODE_NAMED:
        result: dict[str, Any] | None = {"type": "tool", "name": choice.name}
    else:
        base = _CHOICE.get(choice.mode)
        result = dict(base) if base is not None else None
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _response_format(fmt: content_pb2.ResponseFormat, body: dict[str, Any]) -> None:
    kind = fmt.type
    if kind == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        raise invalid_field(
            "response_format.type",
            "Anthropic has no free-form JSON mode; use TYPE_JSON_SCHEMA with a schema",
        )
    if kind == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        if not fmt.HasField("json_schema"):
            raise invalid_field("response_format.json_schema", "TYPE_JSON_SCHEMA needs a schema")
        output = body.setdefault("output_config", {})
        output["format"] = {"type": "json_schema", "schema": cached_struct_to_dict(fmt.json_schema)}


def _reasoning(reasoning: chat_pb2.ReasoningOptions, body: dict[str, Any]) -> int:
    """Set `thinking` and `output_config.effort`; returns the thinking budget (0 without one)."""
    budget = reasoning.budget_tokens
    if budget < 0 or 0 < budget < _MIN_THINKING_BUDGET:
        raise invalid_field(
            "reasoning.budget_tokens", f"Anthropic needs a thinking budget of at least {_MIN_THINKING_BUDGET}"
        )
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif reasoning.include:
        body["thinking"] = {"type": "adaptive"}
    effort = _EFFORT.get(reasoning.effort)
    if effort is not None:
        body.setdefault("output_config", {})["effort"] = effort
    return budget


def _check_thinking_compatible(request: chat_pb2.CompleteRequest) -> None:
    """Anthropic's documented limits while thinking is on, checked here so the caller gets the
    field name instead of an upstream 400."""
    if request.HasField("temperature") and request.temperature != 1.0:
        raise invalid_field("temperature", "with thinking enabled Anthropic accepts only temperature 1")
    if request.HasField("top_k"):
        raise invalid_field("top_k", "Anthropic does not accept top_k with thinking enabled")
    if request.HasField("top_p") and request.top_p < _MIN_THINKING_TOP_P:
        raise invalid_field(
            "top_p", f"with thinking enabled Anthropic needs top_p of at least {_MIN_THINKING_TOP_P}"
        )
    forced = (content_pb2.ToolChoice.MODE_REQUIRED, content_pb2.ToolChoice.MODE_NAMED)
    if request.tools and request.tool_choice.mode in forced:
        raise invalid_field(
            "tool_choice", "with thinking enabled Anthropic allows only MODE_AUTO or MODE_NONE"
        )


def _max_tokens(request: chat_pb2.CompleteRequest, options: AnthropicOptions, budget: int) -> int:
    if not request.HasField("max_output_tokens"):
        return options.default_max_tokens + budget
    value = request.max_output_tokens
    if value <= 0:
        raise invalid_field("max_output_tokens", "must be positive")
    if budget and value <= budget:
        raise invalid_field(
            "max_output_tokens",
            "must be greater than reasoning.budget_tokens (Anthropic counts thinking in max_tokens)",
        )
    return value


def _sampling(request: chat_pb2.CompleteRequest, body: dict[str, Any]) -> None:
    if request.HasField("temperature"):
        if not 0.0 <= request.temperature <= 1.0:  # also rejects NaN
            raise invalid_field("temperature", "Anthropic accepts a temperature from 0 to 1")
        body["temperature"] = request.temperature
    if request.HasField("top_p"):
        if not 0.0 <= request.top_p <= 1.0:
            raise invalid_field("top_p", "must be between 0 and 1")
        body["top_p"] = request.top_p
    if request.HasField("top_k"):
        if request.top_k < 0:
            raise invalid_field("top_k", "must not be negative")
        body["top_k"] = request.top_k
    if request.stop:
        for i, stop in enumerate(request.stop):
            if not stop.strip():
                raise invalid_field(f"stop[{i}]", "Anthropic needs stop sequences with non-whitespace text")
        body["stop_sequences"] = list(request.stop)
    if request.user:
        if len(request.user) > _MAX_USER_ID:
            raise invalid_field("user", f"Anthropic accepts at most {_MAX_USER_ID} characters")
        body["metadata"] = {"user_id": request.user}
