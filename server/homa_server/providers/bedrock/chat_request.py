"""homa `CompleteRequest` -> Converse / ConverseStream body; `CountTokensRequest` -> CountTokens body.

The body is the JSON form of botocore's `ConverseRequest` shape without `modelId` (that goes in
the URL). Mapping decisions (also in docs/providers/bedrock.md):

- ROLE_SYSTEM and ROLE_DEVELOPER text becomes top-level `system` blocks, in order, wherever the
  messages stand (Converse has no mid-conversation system turn).
- ROLE_TOOL messages become `user` messages of `toolResult` blocks. Consecutive messages that end
  up with the same Bedrock role are merged into one, because Converse models want alternating
  turns; in a merged user message the `toolResult` blocks are moved first (Anthropic models
  require them to lead).
- Tool calls: `toolUse{toolUseId, name, input}` with the arguments parsed into an object (empty
  arguments are `{}`). Tool results: a JSON-object `content` is sent as `{"json": ...}`, anything
  else as `{"text": ...}`, empty content as no block; `is_error` adds `status: "error"` (only
  then: models without status support reject the field).
- Reasoning parts round-trip: text + signature -> `reasoningText{text, signature}`; redacted
  reasoning (or signature bytes without text, which is how a stream delivers redacted content)
  -> `redactedContent` (base64 of the signature bytes).
- Tool choice: AUTO -> `auto`, REQUIRED -> `any`, NAMED -> `tool{name}`, UNSPECIFIED -> omitted
  (Bedrock's default is auto). NONE -> the tools are not sent at all; refused (see validation)
  when the history holds tool blocks, because Bedrock then requires the tools.
- `response_format` TYPE_JSON_SCHEMA -> `outputConfig.textFormat` (`json_schema`, the schema as a
  JSON string); TYPE_JSON_OBJECT has no Bedrock equivalent and is INVALID_ARGUMENT.
- Sampling: `maxTokens`, `temperature`, `topP`, `stopSequences` in `inferenceConfig`; `top_k`
  goes to `additionalModelRequestFields.top_k` (the name Anthropic, Mistral and Llama models use);
  seed and penalties are INVALID_ARGUMENT (see validation).
- Reasoning: `budget_tokens` -> `additionalModelRequestFields.thinking` `{type: enabled,
  budget_tokens}` (Anthropic models on Bedrock); `effort` -> `outputConfig.effort` (MINIMAL is
  sent as "low", the lowest level Bedrock has). `include` is not sent: reasoning is always
  returned when the model produces it, because its signature must come back on the next turn.
- `user` -> `requestMetadata.user` (shows up in Bedrock's invocation logs).
- `provider_options.extra_body` is merged at the top level (for example `guardrailConfig`,
  `performanceConfig`, `serviceTier`); where both sides have an object (such as
  `additionalModelRequestFields`) the two are merged with the adapter's keys winning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import cached_struct_to_dict, struct_to_dict
from homa_server.providers.bedrock import content
from homa_server.providers.bedrock.validation import (
    has_tool_blocks,
    validate_messages,
    validate_sampling,
    validate_tool_choice,
    validate_tools,
)

__all__ = ["build_converse_body", "build_count_tokens_body"]

_EFFORT = {
    chat_pb2.REASONING_EFFORT_MINIMAL: "low",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_SYSTEM_ROLES = (content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER)


def build_converse_body(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    """Translate `request` into a Converse (or ConverseStream; same body) request body.

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    validate_tool_choice(request)
    validate_sampling(request)

    system, messages = _conversation(request.messages)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference = _inference_config(request)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(request)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    output = _output_config(request)
    if output:
        body["outputConfig"] = output
    additional = _additional_fields(request)
    if additional:
        body["additionalModelRequestFields"] = additional
    if request.user:
        body["requestMetadata"] = {"user": request.user}
    if request.provider_options.HasField("extra_body"):
        return _merge_extra(struct_to_dict(request.provider_options.extra_body), body)
    return body


def build_count_tokens_body(request: chat_pb2.CountTokensRequest) -> dict[str, Any]:
    """Translate a token-count request into a CountTokens body (`input.converse`).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field.
    """
    validate_messages(request.messages)
    validate_tools(request.tools)
    if has_tool_blocks(request.messages) and not request.tools:
        raise invalid_field(
            "tools", "Bedrock requires the tool definitions when the conversation holds tool calls or results"
        )
    system, messages = _conversation(request.messages)
    converse: dict[str, Any] = {"messages": messages}
    if system:
        converse["system"] = system
    if request.tools:
        converse["toolConfig"] = {"tools": _tool_specs(request.tools)}
    return {"input": {"converse": converse}}


def _merge_extra(extra: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """`body` over `extra`; objects present on both sides are merged one level deep."""
    extra.pop("modelId", None)  # the model is routed, and it travels in the URL
    for key, value in body.items():
        current = extra.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            extra[key] = {**current, **value}
        else:
            extra[key] = value
    return extra


# -- messages -------------------------------------------------------------------------------------


def _conversation(
    messages: Sequence[content_pb2.Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    names = content.DocumentNames()
    merged_user = False
    for i, message in enumerate(messages):
        role = message.role
        if role in _SYSTEM_ROLES:
            system.extend({"text": part.text} for part in message.parts)
            continue
        bedrock_role = "assistant" if role == content_pb2.ROLE_ASSISTANT else "user"
        blocks = [_block(part, f"messages[{i}].parts[{j}]", names) for j, part in enumerate(message.parts)]
        if out and out[-1]["role"] == bedrock_role:
            out[-1]["content"].extend(blocks)
            merged_user = merged_user or bedrock_role == "user"
        else:
            out.append({"role": bedrock_role, "content": blocks})
    if merged_user:
        for entry in out:
            if entry["role"] == "user":
                entry["content"] = _tool_results_first(entry["content"])
    return system, out


def _tool_results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = [block for block in blocks if "toolResult" in block]
    if not results or len(results) == len(blocks):
        return blocks
    return results + [block for block in blocks if "toolResult" not in block]


def _block(part: content_pb2.Part, path: str, names: content.DocumentNames) -> dict[str, Any]:
    kind = part.WhichOneof("kind")
    if kind == "text":
        return {"text": part.text}
    if kind == "tool_call":
        return {"toolUse": _tool_use(part.tool_call, f"{path}.tool_call")}
    if kind == "tool_result":
        return {"toolResult": _tool_result(part.tool_result)}
    if kind == "reasoning":
        return {"reasoningContent": _reasoning(part.reasoning, f"{path}.reasoning")}
    if kind == "inline_data":
        return content.inline_block(part.inline_data, f"{path}.inline_data", names)
    if kind == "file_uri":
        return content.file_uri_block(part.file_uri, f"{path}.file_uri", names)
    return content.document_block(part.document, f"{path}.document", names)  # validated: "document"


def _tool_use(call: content_pb2.ToolCall, path: str) -> dict[str, Any]:
    arguments: Any = {}
    if call.arguments_json.strip():
        try:
            arguments = orjson.loads(call.arguments_json)
        except orjson.JSONDecodeError:
            raise invalid_field(f"{path}.arguments_json", "must be a JSON object") from None
        if not isinstance(arguments, dict):
            raise invalid_field(f"{path}.arguments_json", "must be a JSON object")
    return {"toolUseId": call.id, "name": call.name, "input": arguments}


def _tool_result(result: content_pb2.ToolResult) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    text = result.content
    if text:
        parsed: Any = None
        if text.lstrip().startswith("{"):  # only objects go as `json`; skip the parse otherwise
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
        blocks.append({"json": parsed} if isinstance(parsed, dict) else {"text": text})
    entry: dict[str, Any] = {"toolUseId": result.tool_call_id, "content": blocks}
    if result.is_error:
        entry["status"] = "error"
    return entry


def _reasoning(reasoning: content_pb2.Reasoning, path: str) -> dict[str, Any]:
    signature = reasoning.signature
    if reasoning.redacted or (signature and not reasoning.text):
        if not signature:
            raise invalid_field(f"{path}.signature", "redacted reasoning must carry its data in `signature`")
        return {"redactedContent": content.base64_text(signature)}
    text_block: dict[str, Any] = {"text": reasoning.text}
    if signature:
        try:
            text_block["signature"] = signature.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_field(
                f"{path}.signature", "not a Bedrock reasoning signature (send it back unchanged)"
            ) from None
    return {"reasoningText": text_block}


# -- tools, output and sampling ---------------------------------------------------------------------


def _tool_specs(tools: Iterable[content_pb2.Tool]) -> list[dict[str, Any]]:
    specs = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        schema = cached_struct_to_dict(tool.parameters) if tool.HasField("parameters") else _EMPTY_SCHEMA
        spec["inputSchema"] = {"json": schema}
        if tool.strict:
            spec["strict"] = True
        specs.append({"toolSpec": spec})
    return specs


def _tool_config(request: chat_pb2.CompleteRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if not request.tools or choice.mode == content_pb2.ToolChoice.MODE_NONE:
        return None
    config: dict[str, Any] = {"tools": _tool_specs(request.tools)}
    if choice.mode == content_pb2.ToolChoice.MODE_AUTO:
        config["toolChoice"] = {"auto": {}}
    elif choice.mode == content_pb2.ToolChoice.MODE_REQUIRED:
        config["toolChoice"] = {"any": {}}
    elif choice.mode == content_pb2.ToolChoice.MODE_NAMED:
        config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def _output_config(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    output: dict[str, Any] = {}
    fmt = request.response_format
    if fmt.type == content_pb2.ResponseFormat.TYPE_JSON_OBJECT:
        raise invalid_field(
            "response_format.type",
            "Bedrock offers JSON output only with a schema; use TYPE_JSON_SCHEMA",
        )
    if fmt.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        if not fmt.HasField("json_schema"):
            raise invalid_field("response_format.json_schema", "TYPE_JSON_SCHEMA needs a schema")
        schema: dict[str, Any] = {"schema": orjson.dumps(cached_struct_to_dict(fmt.json_schema)).decode()}
        if fmt.schema_name:
            schema["name"] = fmt.schema_name
        output["textFormat"] = {"type": "json_schema", "structure": {"jsonSchema": schema}}
    effort = _EFFORT.get(request.reasoning.effort)
    if effort is not None:
        output["effort"] = effort
    return output


def _inference_config(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.HasField("max_output_tokens"):
        config["maxTokens"] = request.max_output_tokens
    if request.HasField("temperature"):
        config["temperature"] = request.temperature
    if request.HasField("top_p"):
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    return config


def _additional_fields(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if request.HasField("top_k"):
        fields["top_k"] = request.top_k
    if request.reasoning.budget_tokens > 0:
        fields["thinking"] = {"type": "enabled", "budget_tokens": request.reasoning.budget_tokens}
    return fields
