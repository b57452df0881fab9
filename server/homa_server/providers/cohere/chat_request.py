"""homa `CompleteRequest` -> Cohere v2 Chat request body (`POST /v2/chat`).

Mapping decisions (also in docs/providers/cohere.md; messages and documents in `messages`):
- Tools: `{"type": "function", "function": {name, description?, parameters}}`; the spec requires
  `parameters`, so a tool without a schema gets the empty object schema. Cohere's strictness switch
  is per request (`strict_tools`), so it is sent when any tool asks for `strict`.
- `tool_choice`: REQUIRED -> "REQUIRED", NONE -> "NONE" (only with tools), AUTO/unset -> omitted
  (Cohere's default is auto). MODE_NAMED is rejected in `validation` (Cohere cannot express it).
- `response_format`: TEXT -> `{"type": "text"}`, JSON_OBJECT -> `{"type": "json_object"}`,
  JSON_SCHEMA -> `{"type": "json_object", "json_schema": <schema>}` (Cohere always enforces the
  schema; `schema_name` and `strict` have no Cohere field).
- Sampling: temperature, top_p -> `p`, top_k -> `k`, max_output_tokens -> `max_tokens`, stop ->
  `stop_sequences`, seed, frequency_penalty, presence_penalty, all range-checked in `validation`.
  Cohere's `p` ends at 0.99, so top_p above 0.99 (commonly 1.0, "no nucleus cut") is sent as 0.99,
  the closest value Cohere accepts; below 0.01 is rejected.
- Reasoning: `budget_tokens` > 0 -> `thinking: {"type": "enabled", "token_budget": n}`; any effort
  without a budget -> `{"type": "enabled"}` (Cohere has no effort levels). Nothing set -> omitted
  (Cohere's default: reasoning models think). `include` does not change the request: Cohere returns
  the thinking it produces, and the adapter passes it on (it must come back on tool turns).
  Turning thinking off: `provider_options.extra_body = {"thinking": {"type": "disabled"}}`.
- `user` and `parallel_tool_calls=true` have no Cohere field (Cohere may always call several tools).
- Precedence, lowest first: option defaults (`safety_mode`, `citation_options`, `priority`), then
  `provider_options.extra_body` (so one request can override a provider default; its `stream` is
  dropped, it would change the protocol the adapter parses), then every field the adapter sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.cohere.messages import translate_messages
from homa_server.providers.cohere.validation import MAX_TOP_P, validate_request

__all__ = ["build_chat_body"]

_CHOICE = {
    content_pb2.ToolChoice.MODE_REQUIRED: "REQUIRED",
    content_pb2.ToolChoice.MODE_NONE: "NONE",
}
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def build_chat_body(
    request: chat_pb2.CompleteRequest,
    model: str,
    *,
    stream: bool,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Translate `request` into a Cohere v2 chat body for `model`.

    Args:
        request: the homa request (StreamCompleteRequest is wire-identical; convert it first).
        model: the provider-side model id chosen by routing.
        stream: add `"stream": true`.
        defaults: body fields from the provider options (see `CohereOptions.body_defaults`).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_request(request)
    messages, documents = translate_messages(request.messages)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if documents:
        body["documents"] = documents
    if request.tools:
        body["tools"] = _tools(request.tools)
        if any(tool.strict for tool in request.tools):
            body["strict_tools"] = True
        choice = _CHOICE.get(request.tool_choice.mode)
        if choice is not None:
            body["tool_choice"] = choice
    if request.HasField("response_format"):
        response_format = _response_format(request.response_format)
        if response_format is not None:
            body["response_format"] = response_format
    _sampling(request, body)
    thinking = _thinking(request.reasoning)
    if thinking is not None:
        body["thinking"] = thinking
    if stream:
        body["stream"] = True
    if not defaults and not request.provider_options.HasField("extra_body"):
        return body  # the common case: nothing to merge
    merged: dict[str, Any] = dict(defaults) if defaults else {}
    if request.provider_options.HasField("extra_body"):
        extra = struct_to_dict(request.provider_options.extra_body)
        extra.pop("stream", None)
        merged.update(extra)
    merged.update(body)
    return merged


def _tools(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    result = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = (
            cached_struct_to_dict(tool.parameters) if tool.HasField("parameters") else _EMPTY_PARAMETERS
        )
        result.append({"type": "function", "function": function})
    return result


def _response_format(fmt: content_pb2.ResponseFormat) -> dict[str, Any] | None:
    kind = fmt.type
    if kind == content_pb2.ResponseFormat.TYPE_TEXT:
        return {"type": "text"}
    if kind == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if kind == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        if not fmt.HasField("json_schema"):
            raise invalid_field("response_format.json_schema", "TYPE_JSON_SCHEMA needs a schema")
        return {"type": "json_object", "json_schema": cached_struct_to_dict(fmt.json_schema)}
    return None


def _sampling(request: chat_pb2.CompleteRequest, body: dict[str, Any]) -> None:
    if request.HasField("temperature"):
        body["temperature"] = request.temperature
    if request.HasField("top_p"):
        body["p"] = min(request.top_p, MAX_TOP_P)
    if request.HasField("top_k"):
        body["k"] = request.top_k
    if request.HasField("max_output_tokens"):
        body["max_tokens"] = request.max_output_tokens
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.HasField("seed"):
        body["seed"] = request.seed
    if request.HasField("frequency_penalty"):
        body["frequency_penalty"] = request.frequency_penalty
    if request.HasField("presence_penalty"):
        body["presence_penalty"] = request.presence_penalty


def _thinking(reasoning: chat_pb2.ReasoningOptions) -> dict[str, Any] | None:
    if reasoning.budget_tokens > 0:
        return {"type": "enabled", "token_budget": reasoning.budget_tokens}
    if reasoning.effort != chat_pb2.REASONING_EFFORT_UNSPECIFIED:
        return {"type": "enabled"}
    return None
