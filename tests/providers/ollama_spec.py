"""Validate Ollama traffic against the official spec (`provider-specs/ollama`).

Two checks, both required to pass:

1. openapi-core against `openapi.validation.json` (README section 5.3), with requests addressed to
   the spec's server URL (`http://localhost:11434`; anything else is `ServerNotFound`).
2. A documented-fields check. The spec's schemas do not set `additionalProperties: false`, so
   openapi-core accepts any extra key, including typos (`"optoins"`). Every key of a chat body must
   therefore be a property of the spec's schema, or a field that Ollama's prose reference
   (`api.md`) documents and openapi.yaml omits: `thinking` and `tool_name` on messages, and the
   Modelfile parameters listed in api.md's "Generate request (With options)" example.

Replies the fake sends (JSON bodies, each NDJSON line) are checked with jsonschema against the
spec's component schemas (`ChatResponse`, `ChatStreamEvent`, `ErrorResponse`, `ListResponse`).

The spec is loaded once per process and shared; loading is thread-safe, so the fake's server thread
and the tests can both use it. `HOMA_PROVIDER_SPECS` overrides the specs' location.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

__all__ = [
    "API_MD_MESSAGE_FIELDS",
    "API_MD_OPTIONS",
    "OLLAMA_HOST",
    "OLLAMA_SPEC",
    "ollama_api",
    "undocumented_fields",
    "validate_chat_body",
    "validate_ollama_request",
    "validate_ollama_schema",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
OLLAMA_SPEC = _SPECS / "ollama" / "openapi.validation.json"
OLLAMA_HOST = "http://localhost:11434"  # servers[0].url of the spec

# api.md, "Generate a chat completion": the message object's `thinking` and `tool_name`.
API_MD_MESSAGE_FIELDS = frozenset({"thinking", "tool_name"})
# api.md, "Generate request (With options)": "This example sets every available option".
API_MD_OPTIONS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "draft_num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "penalize_newline",
        "stop",
        "numa",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
    }
)

_lock = threading.Lock()


@cache
def _spec_dict() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(OLLAMA_SPEC.read_bytes())
    return data


def ollama_api() -> OpenAPI:
    """The loaded spec (built on first use, then shared)."""
    with _lock:
        return _ollama_api()


@cache
def _ollama_api() -> OpenAPI:
    return OpenAPI.from_dict(_spec_dict(), config=Config(spec_validator_cls=None))


def validate_ollama_request(
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    content_type: str = "application/json",
) -> list[str]:
    """Validate one request (both checks for `/api/chat`); returns the problems (empty when valid).

    Args:
        method: HTTP method, any case.
        path: the request path, for example `/api/chat`.
        body: raw request body.
        headers: request headers.
        content_type: the body's media type.
    """
    request = MockRequest(
        OLLAMA_HOST,
        method.lower(),
        path,
        data=body.decode("utf-8") if body else None,
        content_type=content_type,
        headers=dict(headers),
    )
    problems = [_describe(error) for error in ollama_api().iter_request_errors(request)]
    if not problems and path == "/api/chat" and body:
        problems = undocumented_fields(orjson.loads(body))
    return problems


def validate_chat_body(body: Any) -> list[str]:
    """Both checks for an `/api/chat` body given as a Python value (no HTTP needed)."""
    return validate_ollama_request("POST", "/api/chat", orjson.dumps(body), {})


def validate_ollama_schema(schema: str, instance: Any) -> list[str]:
    """Validate `instance` against `#/components/schemas/<schema>`; returns problems found."""
    validator = _schema_validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


def undocumented_fields(body: Any) -> list[str]:
    """Keys of a chat body that neither the spec's schemas nor api.md document."""
    if not isinstance(body, dict):
        return ["<root>: not an object"]
    schemas = _spec_dict()["components"]["schemas"]
    problems = _extra("", body, _props(schemas["ChatRequest"]))
    message_fields = _props(schemas["ChatMessage"]) | API_MD_MESSAGE_FIELDS
    call_fields = _props(schemas["ToolCall"])
    call_function_fields = _props(schemas["ToolCall"]["properties"]["function"])
    for i, message in enumerate(body.get("messages") or ()):
        problems += _extra(f"messages[{i}].", message, message_fields)
        for k, call in enumerate(message.get("tool_calls") or () if isinstance(message, dict) else ()):
            problems += _extra(f"messages[{i}].tool_calls[{k}].", call, call_fields)
            function = call.get("function") if isinstance(call, dict) else None
            problems += _extra(f"messages[{i}].tool_calls[{k}].function.", function, call_function_fields)
    tool_fields = _props(schemas["ToolDefinition"])
    tool_function_fields = _props(schemas["ToolDefinition"]["properties"]["function"])
    for i, tool in enumerate(body.get("tools") or ()):
        problems += _extra(f"tools[{i}].", tool, tool_fields)
        function = tool.get("function") if isinstance(tool, dict) else None
        problems += _extra(f"tools[{i}].function.", function, tool_function_fields)
    options = body.get("options")
    problems += _extra("options.", options, _props(schemas["ModelOptions"]) | API_MD_OPTIONS)
    return problems


def _props(schema: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(schema.get("properties", {}))


def _extra(prefix: str, value: Any, allowed: frozenset[str]) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [f"{prefix}{key}: not documented by openapi.yaml or api.md" for key in value if key not in allowed]


@cache
def _schema_validator(schema: str) -> jsonschema.Draft202012Validator:
    with _lock:
        root = {"$ref": f"#/components/schemas/{schema}", "components": _spec_dict()["components"]}
        return jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )


def _describe(error: Exception) -> str:
    parts = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.extend(f"  {getattr(d, 'message', d)!s:.300}" for d in details)
        cause = cause.__cause__
    return "\n".join(parts)
