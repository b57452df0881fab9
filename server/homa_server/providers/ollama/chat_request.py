"""homa `CompleteRequest` -> Ollama `POST /api/chat` request body (schema `ChatRequest`).

Mapping decisions (also in docs/providers/ollama.md; messages are in `messages`):
- `stream` is always sent: Ollama streams by default, so a unary call must say `false`.
- Tools -> OpenAI-style `tools[].function{name, description, parameters}`; `parameters` is required
  by the spec, so a tool without a schema gets an empty object schema. `Tool.strict` has no Ollama
  field ("where supported" in the contract).
- Tool choice: Ollama has none. UNSPECIFIED/AUTO send the tools (the model decides); NONE sends no
  tools at all, which is the only way to stop calls; REQUIRED and NAMED cannot be expressed and are
  INVALID_ARGUMENT naming `tool_choice`. `parallel_tool_calls: false` cannot be enforced either
  (INVALID_ARGUMENT); true is what Ollama does anyway.
- Output format: TYPE_JSON_OBJECT -> `format: "json"`, TYPE_JSON_SCHEMA -> `format: <schema>`
  (Ollama always constrains decoding to it, so `strict` is implied; `schema_name` has no field).
- Sampling -> `options`: temperature, top_p, top_k, max_output_tokens -> num_predict, stop, seed,
  presence_penalty, frequency_penalty. Every homa sampling field has an Ollama option.
- Reasoning -> `think`: effort LOW/MEDIUM/HIGH -> "low"/"medium"/"high"; otherwise `include` ->
  true. MINIMAL and `budget_tokens` have no Ollama equivalent: INVALID_ARGUMENT, not a silent
  approximation.
- `user` (abuse monitoring) has no Ollama field and is not sent.
- Defaults from the provider settings: `keep_alive`, and `model_options` under `options`.
- `provider_options.extra_body` is merged at the top level (so callers can reach fields homa lacks,
  such as `think: false` or `logprobs`); its `options` merge over the settings defaults; fields the
  adapter sets win; `stream` is dropped (it would change the protocol the adapter parses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.ollama.messages import build_messages
from homa_server.validation.chat import validate_chat_request

__all__ = ["RequestDefaults", "build_chat_body", "tool_definitions"]

_THINK_LEVEL = {
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}
_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
_NO_FORCED_CALLS = (content_pb2.ToolChoice.MODE_REQUIRED, content_pb2.ToolChoice.MODE_NAMED)


@dataclass(frozen=True, slots=True)
class RequestDefaults:
    """Per-provider values every request starts from (from the provider's `options`).

    Attributes:
        keep_alive: Ollama `keep_alive`, or None to leave the server default.
        options: Ollama runtime options sent unless the request sets them.
    """

    keep_alive: str | int | float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def build_chat_body(
    request: chat_pb2.CompleteRequest, model: str, defaults: RequestDefaults, *, stream: bool
) -> dict[str, Any]:
    """Translate `request` into an `/api/chat` body for `model`.

    Args:
        request: the homa request (StreamCompleteRequest is wire-identical; convert it first).
        model: the Ollama model name chosen by routing (for example "llama3.2:3b").
        defaults: the provider's keep_alive and default options.
        stream: the value of `stream` (True for NDJSON, False for one JSON answer).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_chat_request(request)
    mode = request.tool_choice.mode
    if mode in _NO_FORCED_CALLS:
        raise invalid_field(
            "tool_choice", "Ollama cannot force a tool call; use MODE_AUTO, MODE_NONE or leave it unset"
        )
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        raise invalid_field(
            "parallel_tool_calls", "Ollama cannot limit a turn to one tool call; leave it unset"
        )

    body: dict[str, Any] = {"model": model, "messages": build_messages(request.messages), "stream": stream}
    if request.tools and mode != content_pb2.ToolChoice.MODE_NONE:
        body["tools"] = tool_definitions(request.tools)
    if request.HasField("response_format"):
        response_format = _format(request.response_format)
        if response_format is not None:
            body["format"] = response_format
    think = _think(request.reasoning)
    if think is not None:
        body["think"] = think
    sampling = _sampling(request)

    extra: dict[str, Any] = {}
    extra_options: Any = None
    if request.provider_options.HasField("extra_body"):
        extra = struct_to_dict(request.provider_options.extra_body)
        extra.pop("stream", None)
        extra_options = extra.pop("options", None)
    options = dict(defaults.options)
    if isinstance(extra_options, dict):
        options.update(extra_options)
    options.update(sampling)
    if options:
        body["options"] = options
    if defaults.keep_alive is not None and "keep_alive" not in extra:
        body["keep_alive"] = defaults.keep_alive
    if extra:
        extra.update(body)
        return extra
    return body


def tool_definitions(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    """homa tools -> Ollama `tools` (type function; `parameters` always present)."""
    result = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = (
            cached_struct_to_dict(tool.parameters) if tool.HasField("parameters") else _EMPTY_SCHEMA
        )
        result.append({"type": "function", "function": function})
    return result


def _format(fmt: content_pb2.ResponseFormat) -> str | dict[str, Any] | None:
    if fmt.type == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        return "json"
    if fmt.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        return cached_struct_to_dict(fmt.json_schema)  # presence checked by validate_chat_request
    return None  # TYPE_TEXT / unspecified: Ollama's default free text


def _think(reasoning: chat_pb2.ReasoningOptions) -> bool | str | None:
    if reasoning.budget_tokens:
        raise invalid_field(
            "reasoning.budget_tokens",
            "Ollama has no thinking budget; use reasoning.effort (low, medium, high) or reasoning.include",
        )
    effort = reasoning.effort
    if effort == chat_pb2.REASONING_EFFORT_MINIMAL:
        raise invalid_field(
            "reasoning.effort", "Ollama's thinking levels are low, medium and high; MINIMAL has no equivalent"
        )
    level = _THINK_LEVEL.get(effort)
    if level is not None:
        return level
    return True if reasoning.include else None


def _sampling(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.HasField("temperature"):
        options["temperature"] = request.temperature
    if request.HasField("top_p"):
        options["top_p"] = request.top_p
    if request.HasField("top_k"):
        options["top_k"] = request.top_k
    if request.HasField("max_output_tokens"):
        options["num_predict"] = request.max_output_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if request.HasField("seed"):
        options["seed"] = request.seed
    if request.HasField("presence_penalty"):
        options["presence_penalty"] = request.presence_penalty
    if request.HasField("frequency_penalty"):
        options["frequency_penalty"] = request.frequency_penalty
    return options
