"""Validate Cohere traffic against Cohere's official OpenAPI spec (`provider-specs/cohere`).

Requests are checked with openapi-core against `cohere-openapi.validation.json`; replies the fake
sends (JSON bodies, error bodies, every stream event) with jsonschema against the same components.
The validation variant is loaded once per process and repaired in three documented ways:

1. Discriminators come back. The validation variant dropped them (provider-specs README 5.1), which
   leaves `oneOf`s whose branches overlap: `{"type": "json_object", "json_schema": {...}}` matches
   both response-format branches and is rejected, and document/tool citation sources match each
   other. Each `oneOf` that has a `discriminator` with a `mapping` in the original YAML becomes
   "the discriminator property is one of the mapped values, and the instance matches the schema
   its value maps to" (`if`/`then`), which is what the discriminator means.
2. YAML 1.1 turned the enum value `OFF` into `false` (`safety_mode`, `citation_options.mode`,
   v1 `prompt_truncation` and `citation_quality`); `false` goes back to "OFF".
3. The objects of the chat request are closed (`additionalProperties: false`), so a misspelled or
   invented field (for example OpenAI's `top_p` instead of Cohere's `p`) fails validation instead
   of passing silently. Free-form members (`Document.data`, tool `parameters`, `json_schema`) stay
   open.

Stream events are validated against the schema that the `StreamedChatResponseV2` discriminator maps
their `type` to (the event schemas are ambiguous without it, README 5.1).

The specs live next to the repository (`../shared/provider-specs`); `HOMA_PROVIDER_SPECS`
overrides the location.
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
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

__all__ = [
    "COHERE_HOST",
    "COHERE_SPEC",
    "EVENT_SCHEMAS",
    "EXAMPLES",
    "cohere_api",
    "validate_cohere_error",
    "validate_cohere_event",
    "validate_cohere_request",
    "validate_cohere_schema",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
COHERE_DIR = _SPECS / "cohere"
COHERE_SPEC = COHERE_DIR / "cohere-openapi.validation.json"
COHERE_ORIGINAL = COHERE_DIR / "cohere-openapi.yaml"
EXAMPLES = COHERE_DIR / "examples"
# openapi-core matches requests against the spec's server URL, so requests are validated as if
# sent there, whatever address the fake listens on.
COHERE_HOST = "https://api.cohere.com"

# Schemas of the chat request closed by repair 3 (members that are free-form JSON stay open).
_CLOSED = (
    "UserMessageV2",
    "AssistantMessageV2",
    "SystemMessageV2",
    "ToolMessageV2",
    "ChatTextContent",
    "ChatThinkingContent",
    "ImageContent",
    "ImageUrl",
    "DocumentContent",
    "Document",
    "ToolV2",
    "ToolCallV2",
    "ChatTextResponseFormatV2",
    "JsonResponseFormatV2",
    "Thinking",
    "CitationOptions",
)

_lock = threading.Lock()


def _original() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with COHERE_ORIGINAL.open("rb") as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=loader)
    return data


def _discriminators(
    node: Any, path: tuple[str, ...], found: list[tuple[tuple[str, ...], dict[str, Any]]]
) -> None:
    if isinstance(node, dict):
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict) and discriminator.get("mapping") and "oneOf" in node:
            found.append((path, discriminator))
        for key, value in node.items():
            _discriminators(value, (*path, str(key)), found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _discriminators(value, (*path, str(index)), found)


def _resolve(root: Any, path: tuple[str, ...]) -> dict[str, Any]:
    """The node at `path`, looking inside the `anyOf: [{oneOf...}, {type: null}]` wrapper that the
    validation variant puts around nullable constructs."""
    node = root
    for key in path:
        if isinstance(node, list):
            node = node[int(key)]
            continue
        if key not in node and "anyOf" in node:
            node = next(branch for branch in node["anyOf"] if key in branch)
        node = node[key]
    if "oneOf" not in node and "anyOf" in node:
        node = next(branch for branch in node["anyOf"] if "oneOf" in branch)
    if not isinstance(node, dict) or "oneOf" not in node:
        raise LookupError(f"no oneOf at {'/'.join(path)}: the validation variant changed shape")
    return node


def _discriminate(node: dict[str, Any], discriminator: dict[str, Any]) -> None:
    prop = discriminator["propertyName"]
    mapping: dict[str, str] = discriminator["mapping"]
    del node["oneOf"]
    node["type"] = "object"
    node["required"] = sorted({*node.get("required", ()), prop})
    node.setdefault("properties", {})[prop] = {"enum": list(mapping)}
    node["allOf"] = [
        {"if": {"properties": {prop: {"const": value}}, "required": [prop]}, "then": {"$ref": ref}}
        for value, ref in mapping.items()
    ]


def _unfalse_enums(node: Any) -> None:
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and False in enum and any(isinstance(v, str) for v in enum):
            node["enum"] = ["OFF" if value is False else value for value in enum]
        for value in node.values():
            _unfalse_enums(value)
    elif isinstance(node, list):
        for value in node:
            _unfalse_enums(value)


@cache
def spec_dict() -> dict[str, Any]:
    """The repaired validation spec (see the module docstring); shared, never mutate it."""
    data: dict[str, Any] = orjson.loads(COHERE_SPEC.read_bytes())
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    original = _original()
    _discriminators(original["components"], ("components",), found)
    _discriminators(original["paths"], ("paths",), found)
    for path, discriminator in found:
        if path[0] == "paths" and "x-fern-streaming" in path:
            continue  # the streaming block is documentation; events are checked via EVENT_SCHEMAS
        _discriminate(_resolve(data, path), discriminator)
    _unfalse_enums(data)
    schemas = data["components"]["schemas"]
    for name in _CLOSED:
        schemas[name]["additionalProperties"] = False
    schemas["ToolV2"]["properties"]["function"]["additionalProperties"] = False
    schemas["ToolCallV2"]["properties"]["function"]["additionalProperties"] = False
    chat = data["paths"]["/v2/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    chat["additionalProperties"] = False
    return data


@cache
def _event_schemas() -> dict[str, str]:
    mapping = _original()["components"]["schemas"]["StreamedChatResponseV2"]["discriminator"]["mapping"]
    return {event: ref.rsplit("/", 1)[-1] for event, ref in mapping.items()}


EVENT_SCHEMAS: Mapping[str, str] = _event_schemas()


def cohere_api() -> OpenAPI:
    """The loaded spec (built on first use, then shared; thread-safe)."""
    with _lock:
        return _cohere_api()


@cache
def _cohere_api() -> OpenAPI:
    return OpenAPI.from_dict(spec_dict(), config=Config(spec_validator_cls=None))


def validate_cohere_request(
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> list[str]:
    """Validate one request as if sent to https://api.cohere.com; returns the problems found.

    Args:
        method: HTTP method, any case.
        path: the path as Cohere sees it, for example `/v2/chat`.
        body: raw request body.
        headers: request headers (the bearer security scheme is checked).
        query: query parameters.
        content_type: the body's media type.
    """
    request = MockRequest(
        COHERE_HOST,
        method.lower(),
        path,
        args=dict(query or {}),
        data=body or None,
        content_type=content_type,
        headers=dict(headers),
    )
    return [_describe(error) for error in cohere_api().iter_request_errors(request)]


def validate_cohere_schema(schema: str, instance: Any) -> list[str]:
    """Validate `instance` against `#/components/schemas/<schema>`; returns problems found."""
    return _problems(_validator(f"#/components/schemas/{schema}"), instance)


def validate_cohere_event(event: Mapping[str, Any]) -> list[str]:
    """Validate one stream event against the schema its `type` maps to."""
    schema = EVENT_SCHEMAS.get(str(event.get("type")))
    if schema is None:
        return [f"unknown event type {event.get('type')!r}"]
    return validate_cohere_schema(schema, event)


def validate_cohere_error(path: str, method: str, status: int, body: Any) -> list[str]:
    """Validate an error body against the response the spec declares for `status` on `path`."""
    responses = spec_dict()["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        return [f"the spec declares no {status} response for {method.upper()} {path}"]
    ref = responses[str(status)]["$ref"].rsplit("/", 1)[-1]
    return _problems(_validator(f"#/components/responses/{ref}/content/application~1json/schema"), body)


@cache
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    with _lock:
        root = {"$ref": pointer, "components": spec_dict()["components"]}
        return jsonschema.Draft202012Validator(root)


def _problems(validator: jsonschema.Draft202012Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


def _describe(error: Exception) -> str:
    parts = [f"{type(error).__name__}: {str(error)[:500]}"]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.extend(f"  {getattr(d, 'message', d)!s:.300}" for d in details)
        cause = cause.__cause__
    return "\n".join(parts)
