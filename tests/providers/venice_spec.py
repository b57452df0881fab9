"""Validate Venice traffic against Venice's official OpenAPI spec (`provider-specs/venice`).

Requests are checked with openapi-core against `swagger.validation.json`, validated as if sent to the
spec's server `https://api.venice.ai/api/v1` (openapi-core matches the server URL; see
provider-specs/README section 5.3). Replies the fake sends are checked with jsonschema against the
spec's schemas: the chat completion and model list bodies, the error bodies per status, and, for
stream chunks (which the spec does not describe), a chunk schema built from Venice's streaming docs
whose `usage` and `venice_parameters` parts are the spec's own.

The validation variant needs four mechanical repairs before a validator can use it, all applied to
the loaded copy (the file itself is untouched):

1. It is OpenAPI 3.0 but its `nullable` rewrite produced JSON-Schema-2020 `type: [T, "null"]` lists,
   which openapi-core's 3.0 validator cannot read (it crashes). The copy is declared 3.1, the
   dialect those lists belong to...
2. ...so the 3.0 boolean `exclusiveMinimum: true` / `exclusiveMaximum: true` (with `minimum` /
   `maximum`) become 3.1's numeric form; without this `seed: 0` would pass.
3. `nullable: true` branches that had no `type` (`{"title": "null"}` in `stop`, message content, ...)
   were left constraint-free and accept anything (`"stop": 5` passed); they become `type: "null"`.
4. YAML 1.1 read the `enable_web_search` enum `auto / off / on` as `"auto", false, true`, so the
   documented values "on"/"off" failed; the enum is restored to strings.

The spec is loaded once per process (thread-safe; the fake's server thread shares it). The specs
live next to the repository (`../shared/provider-specs`); `HOMA_PROVIDER_SPECS` overrides that.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest
from openapi_core.validation.request.exceptions import SecurityValidationError

__all__ = [
    "BASE_PATH",
    "VENICE_HOST",
    "VENICE_SPEC",
    "validate_chat_body",
    "validate_venice_request",
    "validate_venice_schema",
    "venice_api",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
VENICE_SPEC = _SPECS / "venice" / "swagger.validation.json"
VENICE_HOST = "https://api.venice.ai"
BASE_PATH = "/api/v1"

_lock = threading.Lock()
_YAML_BOOLEAN_ENUM = ["auto", False, True]


def _repair(node: Any) -> None:
    if isinstance(node, dict):
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(flag) is True and bound in node:
                node[flag] = node.pop(bound)
            elif node.get(flag) is False:
                del node[flag]
        if node == {"title": "null"}:
            node["type"] = "null"
        if node.get("enum") == _YAML_BOOLEAN_ENUM:
            node["enum"] = ["auto", "off", "on"]
        for child in node.values():
            _repair(child)
    elif isinstance(node, list):
        for child in node:
            _repair(child)


@cache
def _spec_dict() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(VENICE_SPEC.read_bytes())
    data["openapi"] = "3.1.0"
    _repair(data)
    return data


def venice_api() -> OpenAPI:
    """The loaded, repaired spec (built on first use, then shared)."""
    with _lock:
        return _venice_api()


@cache
def _venice_api() -> OpenAPI:
    return OpenAPI.from_dict(_spec_dict(), config=Config(spec_validator_cls=None))


def validate_venice_request(
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> list[str]:
    """Validate one request; returns the problems found (empty when valid).

    Args:
        method: HTTP method, any case.
        path: the path as Venice sees it, including `/api/v1` (e.g. `/api/v1/chat/completions`).
        body: raw request body.
        headers: request headers (the Bearer scheme is checked).
        query: query parameters.
        content_type: the body's media type.
    """
    request = MockRequest(
        VENICE_HOST,
        method.lower(),
        path,
        args=query,
        data=body.decode("utf-8") if body else None,
        content_type=content_type,
        headers=headers,
    )
    return [_describe(error) for error in venice_api().iter_request_errors(request)]


def validate_chat_body(body: dict[str, Any]) -> list[str]:
    """Validate a chat completion body as the adapter would send it (no HTTP involved)."""
    headers = {"Authorization": "Bearer test-key", "Content-Type": "application/json"}
    return validate_venice_request("POST", f"{BASE_PATH}/chat/completions", orjson.dumps(body), headers)


def is_security_problem(problem: str) -> bool:
    """True for a missing or malformed credential (the fake answers those like Venice: 402/401)."""
    return problem.startswith(SecurityValidationError.__name__)


# Reply schemas by name: the spec's own, and the chunk / in-band error shapes from Venice's docs.
_CHAT_RESPONSE = ("paths", "/chat/completions", "post", "responses", "200", "content", "application/json")
_MODELS_RESPONSE = ("paths", "/models", "get", "responses", "200", "content", "application/json")


def _pointer(*steps: str) -> str:
    return "#/" + "/".join(step.replace("~", "~0").replace("/", "~1") for step in steps)


_CHAT = _pointer(*_CHAT_RESPONSE, "schema")
_CHAT_PROPERTIES = _pointer(*_CHAT_RESPONSE, "schema", "properties")
_OPENAI_STYLE_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "retry_after": {"type": "number", "minimum": 0},
            },
        }
    },
}
_CHUNK = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "delta"],
                "properties": {
                    "index": {"type": "integer"},
                    "delta": {
                        "type": "object",
                        "properties": {
                            "role": {"enum": ["assistant"]},
                            "content": {"type": ["string", "null"]},
                            "reasoning_content": {"type": ["string", "null"]},
                            "reasoning_details": {
                                "$ref": f"{_CHAT}/properties/choices/items/properties/"
                                "message/anyOf/0/properties/reasoning_details"
                            },
                            "thought_signature": {"type": ["string", "null"]},
                            "tool_calls": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["index"],
                                    "properties": {
                                        "index": {"type": "integer"},
                                        "id": {"type": "string"},
                                        "type": {"const": "function"},
                                        "function": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "arguments": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                    "finish_reason": {"enum": ["stop", "length", "tool_calls", "content_filter", None]},
                    "logprobs": {"type": ["object", "null"]},
                },
            },
        },
        "usage": {"anyOf": [{"$ref": f"{_CHAT_PROPERTIES}/usage"}, {"type": "null"}]},
        "cost": {"$ref": f"{_CHAT_PROPERTIES}/cost"},
        "venice_parameters": {
            "type": "object",
            "properties": {
                "web_search_citations": {
                    "$ref": f"{_CHAT_PROPERTIES}/venice_parameters/properties/web_search_citations"
                }
            },
        },
    },
    "additionalProperties": False,
}
_SCHEMAS: dict[str, Any] = {
    "ChatCompletion": {"$ref": _CHAT},
    "ModelList": {"$ref": _pointer(*_MODELS_RESPONSE, "schema")},
    "ChatCompletionChunk": _CHUNK,
    "OpenAIStyleError": _OPENAI_STYLE_ERROR,
    "EmbeddingList": {
        "$ref": _pointer(
            "paths", "/embeddings", "post", "responses", "200", "content", "application/json", "schema"
        )
    },
}


def validate_venice_schema(schema: str, instance: Any) -> list[str]:
    """Validate `instance` against a named reply schema; returns the problems found.

    Args:
        schema: a component (`StandardError`, `DetailedError`, `ContentViolationError`,
            `PayloadTooLargeError`, ...) or one of `ChatCompletion`, `ModelList`,
            `ChatCompletionChunk`, `OpenAIStyleError`.
        instance: the parsed JSON.
    """
    validator = _schema_validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


@cache
def _schema_validator(schema: str) -> jsonschema.Draft202012Validator:
    with _lock:
        spec = _spec_dict()
        target = _SCHEMAS.get(schema, {"$ref": f"#/components/schemas/{schema}"})
        root = {**target, "components": spec["components"], "paths": spec["paths"]}
        return jsonschema.Draft202012Validator(root)


def _describe(error: Exception) -> str:
    parts = [f"{type(error).__name__}: {str(error)[:300]}"]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.extend(f"  {getattr(d, 'message', d)!s:.300}" for d in details)
        cause = cause.__cause__
    return "\n".join(parts)
