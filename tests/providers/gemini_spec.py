"""Validate Gemini traffic against Google's own definitions (`provider-specs/gemini`).

Three independent checks, all of which must pass (provider-specs/README section 5.4):

1. **Proto**: the body parses with the official `google-ai-generativelanguage` message types,
   `from_json(..., ignore_unknown_fields=False)` (unknown fields, wrong types, oneof conflicts).
   Where the pinned package lags the API (a field the discovery document defines but the proto
   does not, such as `thinkingConfig.thinkingLevel`), that field is left out of the proto parse
   and checked by the discovery walk alone.
2. **Discovery document**: the body is walked against the schema of the same name in
   `generativelanguage-v1beta-discovery.json`. Property names must be the discovery's lowerCamelCase
   names (the proto parser also accepts snake_case, the adapter must not send it), enums must be
   listed values, integers/numbers/booleans/strings must have the JSON type the schema gives (the
   proto parser accepts numbers in strings), and `format: byte` must be valid base64 (the proto
   parser accepts anything). It is also the reference where the pinned proto package lags.
3. **Semantics** Google enforces server-side but neither schema expresses: known roles, exactly one
   data field per part, function calls only in model turns and function responses (with `name` and
   `response`) only in user turns, valid and unique function names, `toolConfig` consistent with
   the declarations, `responseJsonSchema` only with `application/json`, sampling ranges, at most 5
   stop sequences.

Replies the fake sends are checked with 1 and 2 (`validate_response`), error bodies against
`google.rpc.Status` with typed details (`validate_error_body`).
"""

from __future__ import annotations

import binascii
import os
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from google.ai import generativelanguage_v1beta as glm
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "DISCOVERY",
    "EXAMPLES",
    "validate_count_tokens_request",
    "validate_error_body",
    "validate_generate_content_request",
    "validate_response",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
DISCOVERY = _SPECS / "gemini" / "generativelanguage-v1beta-discovery.json"
EXAMPLES = _SPECS / "gemini" / "examples"

# RetryInfo, QuotaFailure, ErrorInfo, Help, ... must be importable for Any details to parse.
assert error_details_pb2.RetryInfo.DESCRIPTOR is not None

_lock = threading.Lock()
_DATA_FIELDS = (
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
)
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_.:-]{1,128}")
_MODEL_NAME = re.compile(r"(?:models|tunedModels)/[^/]+")
_DURATION = re.compile(r"-?\d+(?:\.\d{1,9})?s")
_INT64 = re.compile(r"-?\d+")
_CODE_NAMES = frozenset(code_pb2.Code.keys())
_MESSAGES = {
    "GenerateContentRequest": glm.GenerateContentRequest,
    "CountTokensRequest": glm.CountTokensRequest,
    "GenerateContentResponse": glm.GenerateContentResponse,
    "CountTokensResponse": glm.CountTokensResponse,
    "ListModelsResponse": glm.ListModelsResponse,
    "BatchEmbedContentsRequest": glm.BatchEmbedContentsRequest,
    "BatchEmbedContentsResponse": glm.BatchEmbedContentsResponse,
}


@cache
def _schemas() -> dict[str, Any]:
    with _lock:
        schemas: dict[str, Any] = orjson.loads(DISCOVERY.read_bytes())["schemas"]
        return schemas


# ---- 1 + 2: proto and discovery ------------------------------------------------------------


def _proto(name: str, payload: Any) -> list[str]:
    pruned = _prune(payload, _MESSAGES[name].meta.pb.DESCRIPTOR, _schemas()[name])
    try:
        _MESSAGES[name].from_json(orjson.dumps(pruned), ignore_unknown_fields=False)
    except Exception as exc:  # json_format.ParseError and friends
        return [f"proto {name}: {str(exc)[:300]}"]
    return []


def _prune(value: Any, descriptor: Any, schema: dict[str, Any]) -> Any:
    """A copy of `value` without the fields the pinned proto package lacks but the discovery
    document defines (the proto lags the API; the discovery walk still checks those fields).
    Fields unknown to both are kept, so the proto parser still rejects them."""
    if "$ref" in schema:
        schema = _schemas().get(schema["$ref"], {})
    if isinstance(value, list):
        return [_prune(item, descriptor, schema.get("items") or {}) for item in value]
    if not isinstance(value, dict) or descriptor is None:
        return value
    fields = {field.json_name: field for field in descriptor.fields}
    properties = schema.get("properties") or {}
    pruned = {}
    for key, item in value.items():
        field = fields.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            if key not in properties:
                pruned[key] = item  # unknown to both: let the proto parser report it
            continue
        message = field.message_type
        if (
            message is None
            or message.full_name.startswith("google.protobuf.")
            or message.GetOptions().map_entry
        ):
            pruned[key] = item
        else:
            pruned[key] = _prune(item, message, properties.get(key) or {})
    return pruned


def _discovery(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    ref = schema.get("$ref")
    if ref is not None:
        schema = _schemas().get(ref, {})  # a few refs (e.g. MediaResolution) are not defined
    kind = schema.get("type")
    if kind in (None, "any"):
        return
    if kind == "object":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object")
            return
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _discovery(item, properties[key], f"{path}.{key}", problems)
            elif extra is not None:
                _discovery(item, extra, f"{path}.{key}", problems)
            elif "_" in key and _camel(key) in properties:
                problems.append(f"{path}.{key}: not camelCase (the API name is {_camel(key)!r})")
            else:
                problems.append(f"{path}.{key}: unknown field")
    elif kind == "array":
        if not isinstance(value, list):
            problems.append(f"{path}: expected an array")
            return
        for i, item in enumerate(value):
            _discovery(item, schema.get("items") or {}, f"{path}[{i}]", problems)
    elif kind == "string":
        _string(value, schema, path, problems)
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{path}: expected a number, got {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: expected a boolean, got {value!r}")


def _string(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    fmt = schema.get("format")
    if fmt in ("int64", "uint64"):
        # proto3 JSON: 64-bit integers are strings (numbers are accepted too).
        if not (isinstance(value, int) or (isinstance(value, str) and _INT64.fullmatch(value))):
            problems.append(f"{path}: expected a 64-bit integer, got {value!r}")
        return
    if not isinstance(value, str):
        problems.append(f"{path}: expected a string, got {value!r}")
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        problems.append(f"{path}: {value!r} is not one of {enum}")
    if fmt == "byte" and not _is_base64(value):
        problems.append(f"{path}: not base64")
    elif fmt == "google-duration" and not _DURATION.fullmatch(value):
        problems.append(f"{path}: not a Duration")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _is_base64(text: str) -> bool:
    cleaned = text.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        binascii.a2b_base64(cleaned, strict_mode=True)
    except binascii.Error:
        return False
    return True


def _both(name: str, raw: bytes) -> tuple[Any, list[str]]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [f"not JSON: {exc}"]
    problems = _proto(name, body)
    _discovery(body, {"$ref": name}, "", problems)
    return body, problems


# ---- 3: semantics --------------------------------------------------------------------------


def _semantics(body: dict[str, Any], path: str, problems: list[str]) -> None:
    contents = body.get("contents")
    if not contents:
        problems.append(f"{path}.contents: at least one content is required")
    for i, content in enumerate(contents or ()):
        _content(content, f"{path}.contents[{i}]", problems)
    system = body.get("systemInstruction")
    if system is not None:
        for j, part in enumerate(system.get("parts") or ()):
            if set(part) != {"text"}:
                problems.append(f"{path}.systemInstruction.parts[{j}]: system instructions are text only")
    declared = _declarations(body.get("tools") or (), f"{path}.tools", problems)
    _tool_config(body.get("toolConfig"), declared, f"{path}.toolConfig", problems)
    _generation(body.get("generationConfig") or {}, f"{path}.generationConfig", problems)


def _content(content: Any, path: str, problems: list[str]) -> None:
    role = content.get("role")
    if role not in ("user", "model"):
        problems.append(f"{path}.role: must be 'user' or 'model', got {role!r}")
    parts = content.get("parts")
    if not parts:
        problems.append(f"{path}.parts: a content needs at least one part")
    for j, part in enumerate(parts or ()):
        where = f"{path}.parts[{j}]"
        data = [key for key in _DATA_FIELDS if key in part]
        if len(data) != 1:
            problems.append(f"{where}: exactly one data field is required, got {data}")
            continue
        kind = data[0]
        if part.get("thought") and (role != "model" or kind != "text"):
            problems.append(f"{where}.thought: only model text parts are thoughts")
        if kind == "functionCall":
            call = part["functionCall"]
            if role != "model":
                problems.append(f"{where}.functionCall: only in model turns")
            if not _FUNCTION_NAME.fullmatch(call.get("name") or ""):
                problems.append(f"{where}.functionCall.name: missing or invalid")
        elif kind == "functionResponse":
            response = part["functionResponse"]
            if role != "user":
                problems.append(f"{where}.functionResponse: only in user turns")
            if not _FUNCTION_NAME.fullmatch(response.get("name") or ""):
                problems.append(f"{where}.functionResponse.name: required")
            if not isinstance(response.get("response"), dict):
                problems.append(f"{where}.functionResponse.response: a JSON object is required")
        elif kind == "inlineData":
            blob = part["inlineData"]
            if not blob.get("mimeType") or not blob.get("data"):
                problems.append(f"{where}.inlineData: mimeType and data are required")
        elif kind == "fileData" and not part["fileData"].get("fileUri"):
            problems.append(f"{where}.fileData.fileUri: required")


def _declarations(tools: Any, path: str, problems: list[str]) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools):
        for j, declaration in enumerate(tool.get("functionDeclarations") or ()):
            where = f"{path}[{i}].functionDeclarations[{j}]"
            name = declaration.get("name") or ""
            if not _FUNCTION_NAME.fullmatch(name):
                problems.append(f"{where}.name: missing or invalid")
            if name in names:
                problems.append(f"{where}.name: duplicate {name!r}")
            names.add(name)
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                problems.append(f"{where}: parameters and parametersJsonSchema are exclusive")
            schema = declaration.get("parametersJsonSchema")
            if schema is not None and (
                not isinstance(schema, dict) or schema.get("type", "object") != "object"
            ):
                problems.append(f"{where}.parametersJsonSchema: must describe an object")
    return names


def _tool_config(config: Any, declared: set[str], path: str, problems: list[str]) -> None:
    if config is None:
        return
    calling = config.get("functionCallingConfig")
    if calling is None:
        return
    if not declared:
        problems.append(f"{path}: function calling config without function declarations")
    allowed = calling.get("allowedFunctionNames")
    if allowed:
        if calling.get("mode") not in ("ANY", "VALIDATED"):
            problems.append(f"{path}.functionCallingConfig.allowedFunctionNames: only with mode ANY")
        for name in allowed:
            if name not in declared:
                problems.append(f"{path}.functionCallingConfig.allowedFunctionNames: unknown {name!r}")


def _generation(config: dict[str, Any], path: str, problems: list[str]) -> None:
    ranges = {
        "temperature": (0.0, 2.0),
        "topP": (0.0, 1.0),
        "presencePenalty": (-2.0, 1.999999),
        "frequencyPenalty": (-2.0, 1.999999),
    }
    for key, (low, high) in ranges.items():
        value = config.get(key)
        if isinstance(value, int | float) and not low <= value <= high:
            problems.append(f"{path}.{key}: {value} is outside [{low}, {high}]")
    for key in ("topK", "maxOutputTokens"):
        value = config.get(key)
        if isinstance(value, int) and value < 1:
            problems.append(f"{path}.{key}: must be positive")
    stops = config.get("stopSequences") or []
    if len(stops) > 5 or not all(stops):
        problems.append(f"{path}.stopSequences: at most 5 non-empty sequences")
    if "responseJsonSchema" in config:
        if config.get("responseMimeType") != "application/json":
            problems.append(f"{path}.responseJsonSchema: requires responseMimeType application/json")
        if "responseSchema" in config:
            problems.append(f"{path}: responseSchema and responseJsonSchema are exclusive")
    budget = (config.get("thinkingConfig") or {}).get("thinkingBudget")
    if isinstance(budget, int) and budget < -1:
        problems.append(f"{path}.thinkingConfig.thinkingBudget: must be -1 or more")


# ---- public API ----------------------------------------------------------------------------


def validate_generate_content_request(raw: bytes) -> list[str]:
    """Problems of a `generateContent` / `streamGenerateContent` body (empty when valid)."""
    body, problems = _both("GenerateContentRequest", raw)
    if not problems:  # the semantic checks assume the shapes the schemas guarantee
        _semantics(body, "", problems)
    return problems


def validate_count_tokens_request(raw: bytes) -> list[str]:
    """Problems of a `countTokens` body (empty when valid)."""
    body, problems = _both("CountTokensRequest", raw)
    if problems:  # the semantic checks assume the shapes the schemas guarantee
        return problems
    inner = body.get("generateContentRequest")
    if inner is not None and "contents" in body:
        problems.append("contents and generateContentRequest are exclusive")
    if isinstance(inner, dict):
        if not _MODEL_NAME.fullmatch(inner.get("model") or ""):
            problems.append(".generateContentRequest.model: must be models/{model}")
        _semantics(inner, ".generateContentRequest", problems)
    elif not body.get("contents"):
        problems.append("contents or generateContentRequest is required")
    return problems


def validate_batch_embed_request(raw: bytes) -> list[str]:
    """Problems of a `batchEmbedContents` body (empty when valid): proto + discovery shapes, and
    every request naming a `models/{model}` with text content."""
    body, problems = _both("BatchEmbedContentsRequest", raw)
    if problems:
        return problems
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return [".requests: required, at least one"]
    for i, item in enumerate(requests):
        if not _MODEL_NAME.fullmatch(item.get("model") or ""):
            problems.append(f".requests[{i}].model: must be models/{{model}}")
        if not (item.get("content") or {}).get("parts"):
            problems.append(f".requests[{i}].content.parts: required")
    return problems


def validate_response(name: str, payload: Any) -> list[str]:
    """Problems of a reply body or stream chunk of type `name` (for example
    "GenerateContentResponse", "CountTokensResponse", "ListModelsResponse")."""
    problems = _proto(name, payload)
    _discovery(payload, {"$ref": name}, "", problems)
    return problems


def validate_error_body(payload: Any) -> list[str]:
    """Problems of a Google API error body `{"error": google.rpc.Status + status name}`."""
    if not isinstance(payload, dict) or set(payload) != {"error"} or not isinstance(payload["error"], dict):
        return ["an error body is exactly {'error': {...}}"]
    error = dict(payload["error"])
    problems = []
    status = error.pop("status", None)
    if status not in _CODE_NAMES:
        problems.append(f"error.status: {status!r} is not a google.rpc.Code name")
    if not isinstance(error.get("code"), int) or not isinstance(error.get("message"), str):
        problems.append("error.code (HTTP status) and error.message are required")
    try:
        json_format.ParseDict(error, status_pb2.Status())
    except json_format.ParseError as exc:
        problems.append(f"error: not a google.rpc.Status: {str(exc)[:300]}")
    return problems
