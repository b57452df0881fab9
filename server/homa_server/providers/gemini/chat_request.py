"""homa `CompleteRequest` -> Gemini `GenerateContentRequest` body (camelCase proto3 JSON), and the
`countTokens` body.

Mapping decisions (also in docs/providers/gemini.md; messages are in `contents`):
- Tools become one `tools[]` entry with `functionDeclarations`; the JSON Schema goes, unchanged,
  into `parametersJsonSchema` (Gemini's OpenAPI-subset `parameters` would need a lossy rewrite).
- Tool choice: AUTO -> AUTO, NONE -> NONE, REQUIRED -> ANY, NAMED -> ANY with
  `allowedFunctionNames: [name]`. `Tool.strict` has no per-tool flag; a strict tool with AUTO (or
  unset) choice selects mode VALIDATED, Gemini's schema-constrained function calling (ANY is
  already constrained). `toolConfig` is only sent with tools. `parallel_tool_calls: false` cannot
  be expressed and is rejected by validation; `true` is what Gemini does anyway.
- Response format: TEXT -> `responseMimeType: text/plain`; JSON_OBJECT -> `application/json`;
  JSON_SCHEMA -> `application/json` plus `responseJsonSchema` (JSON Schema, unchanged). Gemini
  always enforces a given schema, so `strict` needs no field; `schema_name` has none either.
- Sampling: temperature, topP, topK, maxOutputTokens, stopSequences, seed, presencePenalty and
  frequencyPenalty map 1:1 (ranges checked by validation).
- Reasoning: `budget_tokens` -> `thinkingConfig.thinkingBudget`; without it, `effort` -> the
  configured `effort_budgets` entry; `include` -> `thinkingConfig.includeThoughts`.
- `user` has no Gemini field and is not sent (it is an abuse-monitoring hint, not a sampling
  control, and rejecting it would break fallback between providers).
- `safetySettings` come from the provider options.
- `provider_options.extra_body` is merged recursively under the adapter's body: objects merge, the
  adapter's values win, and `tools` lists are concatenated (so built-in tools such as
  `{"googleSearch": {}}` can be added next to the function declarations).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.gemini.contents import build_contents
from homa_server.providers.gemini.options import GeminiOptions
from homa_server.providers.gemini.validation import (
    validate_messages,
    validate_sampling,
    validate_tool_choice,
    validate_tools,
)

__all__ = ["build_chat_body", "build_count_body", "model_path"]

_MODE = {
    content_pb2.ToolChoice.MODE_AUTO: "AUTO",
    content_pb2.ToolChoice.MODE_NONE: "NONE",
    content_pb2.ToolChoice.MODE_REQUIRED: "ANY",
    content_pb2.ToolChoice.MODE_NAMED: "ANY",
}
_JSON = "application/json"


def model_path(model: str) -> str:
    """The resource name of `model`: `models/<id>`; names already qualified (`models/<id>`,
    `tunedModels/<id>`) are kept."""
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def build_chat_body(request: chat_pb2.CompleteRequest, options: GeminiOptions) -> dict[str, Any]:
    """Translate `request` into a `GenerateContentRequest` body (the model goes in the URL).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    validate_tool_choice(request)
    validate_sampling(request)

    system, contents = build_contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system is not None:
        body["systemInstruction"] = system
    if request.tools:
        body["tools"] = [{"functionDeclarations": _declarations(request.tools)}]
        tool_config = _tool_config(request)
        if tool_config is not None:
            body["toolConfig"] = tool_config
    generation = _generation_config(request, options)
    if generation:
        body["generationConfig"] = generation
    if options.safety_settings:
        body["safetySettings"] = options.safety_body()
    if request.provider_options.HasField("extra_body"):
        return merge_extra(struct_to_dict(request.provider_options.extra_body), body)
    return body


def build_count_body(request: chat_pb2.CountTokensRequest, model: str) -> dict[str, Any]:
    """A `CountTokensRequest` body counting `request`'s messages and tools on `model`.

    The prompt is sent as `generateContentRequest` (not bare `contents`) so that the system
    instruction and tool declarations are counted too; that form needs the model's resource name.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    system, contents = build_contents(request.messages)
    inner: dict[str, Any] = {"model": model_path(model), "contents": contents}
    if system is not None:
        inner["systemInstruction"] = system
    if request.tools:
        inner["tools"] = [{"functionDeclarations": _declarations(request.tools)}]
    return {"generateContentRequest": inner}


def merge_extra(extra: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Put `body` over `extra` recursively (see the module docstring); returns `extra`."""
    for key, value in body.items():
        current = extra.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            extra[key] = merge_extra(current, value)
        elif key == "tools" and isinstance(current, list):
            extra[key] = [*value, *current]
        else:
            extra[key] = value
    return extra


def _declarations(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        if tool.HasField("parameters"):
            declaration["parametersJsonSchema"] = cached_struct_to_dict(tool.parameters)
        declarations.append(declaration)
    return declarations


def _tool_config(request: chat_pb2.CompleteRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    mode = _MODE.get(choice.mode)
    if mode in (None, "AUTO") and any(tool.strict for tool in request.tools):
        mode = "VALIDATED"
    if mode is None:
        return None
    config: dict[str, Any] = {"mode": mode}
    if choice.mode == content_pb2.ToolChoice.MODE_NAMED:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


def _generation_config(request: chat_pb2.CompleteRequest, options: GeminiOptions) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.HasField("temperature"):
        config["temperature"] = request.temperature
    if request.HasField("top_p"):
        config["topP"] = request.top_p
    if request.HasField("top_k"):
        config["topK"] = request.top_k
    if request.HasField("max_output_tokens"):
        config["maxOutputTokens"] = request.max_output_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.HasField("seed"):
        config["seed"] = request.seed
    if request.HasField("presence_penalty"):
        config["presencePenalty"] = request.presence_penalty
    if request.HasField("frequency_penalty"):
        config["frequencyPenalty"] = request.frequency_penalty
    fmt = request.response_format
    if fmt.type == content_pb2.ResponseFormat.TYPE_TEXT:
        config["responseMimeType"] = "text/plain"
    elif fmt.type == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        config["responseMimeType"] = _JSON
    elif fmt.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        config["responseMimeType"] = _JSON
        config["responseJsonSchema"] = cached_struct_to_dict(fmt.json_schema)
    thinking = _thinking_config(request.reasoning, options)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(reasoning: chat_pb2.ReasoningOptions, options: GeminiOptions) -> dict[str, Any]:
    thinking: dict[str, Any] = {}
    budgets = options.effort_budgets
    budget = reasoning.budget_tokens
    if budget > 0:
        thinking["thinkingBudget"] = budget
    elif reasoning.effort == chat_pb2.REASONING_EFFORT_MINIMAL:
        thinking["thinkingBudget"] = budgets.minimal
    elif reasoning.effort == chat_pb2.REASONING_EFFORT_LOW:
        thinking["thinkingBudget"] = budgets.low
    elif reasoning.effort == chat_pb2.REASONING_EFFORT_MEDIUM:
        thinking["thinkingBudget"] = budgets.medium
    elif reasoning.effort == chat_pb2.REASONING_EFFORT_HIGH:
        thinking["thinkingBudget"] = budgets.high
    if reasoning.include:
        thinking["includeThoughts"] = True
    return thinking
