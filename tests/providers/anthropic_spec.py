"""Validate Anthropic traffic against the official OpenAPI spec (`provider-specs/anthropic`).

Requests are checked with openapi-core against `openapi.validation.json` (the variant whose
`nullable`/`discriminator` constructs validators understand; provider-specs/README section 5.1),
as if sent to the spec's server `https://api.anthropic.com`. The spec declares no security scheme,
so the auth headers (`x-api-key`, `anthropic-version`) are checked by `check_auth_headers`, which
the fake upstream applies the way Anthropic does.

Responses, stream events and error bodies the fake sends are checked with jsonschema against the
spec's component schemas (`Message`, the `MessageStreamEvent` members picked by `type`,
`ErrorResponse`, `CountMessageTokensResponse`, `ListResponse_ModelInfo_`), so the fake cannot
drift from Anthropic's shapes either.

The spec is loaded once per process and shared; loading is thread-safe, so the fake's server
thread and the tests can both use it. `HOMA_PROVIDER_SPECS` overrides the spec location.
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
    "ANTHROPIC_HOST",
    "ANTHROPIC_SPEC",
    "EXAMPLES",
    "STREAM_EVENT_SCHEMAS",
    "anthropic_api",
    "check_auth_headers",
    "validate_anthropic_request",
    "validate_anthropic_schema",
    "validate_messages_body",
    "validate_stream_event",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
ANTHROPIC_SPEC = _SPECS / "anthropic" / "openapi.validation.json"
EXAMPLES = ANTHROPIC_SPEC.parent / "examples"
ANTHROPIC_HOST = "https://api.anthropic.com"

# The concrete schema of each SSE event, by its `type` (the original spec's discriminator mapping).
# `ping` is not in the spec; its shape is fixed by the SDK's stream parser.
STREAM_EVENT_SCHEMAS = {
    "message_start": "MessageStartEvent",
    "message_delta": "MessageDeltaEvent",
    "message_stop": "MessageStopEvent",
    "content_block_start": "ContentBlockStartEvent",
    "content_block_delta": "ContentBlockDeltaEvent",
    "content_block_stop": "ContentBlockStopEvent",
    "error": "ErrorResponse",
}

_lock = threading.Lock()


@cache
def _spec_dict() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(ANTHROPIC_SPEC.read_bytes())
    return data


def anthropic_api() -> OpenAPI:
    """The loaded spec (built on first use, then shared)."""
    with _lock:
        return _anthropic_api()


@cache
def _anthropic_api() -> OpenAPI:
    return OpenAPI.from_dict(_spec_dict(), config=Config(spec_validator_cls=None))


def validate_anthropic_request(
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> list[str]:
    """Validate one request against the spec; returns the problems found (empty when valid).

    Args:
        method: HTTP method, any case.
        path: the path as Anthropic sees it, e.g. `/v1/messages`.
        body: raw request body.
        headers: request headers.
        query: query parameters (e.g. `limit`, `after_id` of `/v1/models`).
        content_type: the body's media type.
    """
    request = MockRequest(
        ANTHROPIC_HOST,
        method.lower(),
        path,
        args=dict(query or {}),
        data=body.decode("utf-8") if body else None,  # type: ignore[arg-type]
        content_type=content_type,
        headers=dict(headers),
    )
    api = anthropic_api()
    return [_describe(error) for error in api.iter_request_errors(request)]


def validate_messages_body(body: Any) -> list[str]:
    """Validate a Messages API body (`CreateMessageParams`) as a `POST /v1/messages` would be."""
    headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    return validate_anthropic_request("POST", "/v1/messages", orjson.dumps(body), headers)


def check_auth_headers(headers: Mapping[str, str], api_key: str | None) -> tuple[int, str, str] | None:
    """Anthropic's own header checks: None when fine, else (status, error type, message).

    Messages are the ones Anthropic sends. `api_key` None accepts any non-empty key.
    """
    key = headers.get("x-api-key")
    if not key:
        return 401, "authentication_error", "x-api-key header is required"
    if api_key is not None and key != api_key:
        return 401, "authentication_error", "invalid x-api-key"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    return None


def validate_anthropic_schema(schema: str, instance: Any) -> list[str]:
    """Validate `instance` against `#/components/schemas/<schema>`; returns problems found."""
    validator = _schema_validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


def validate_stream_event(event_name: str, payload: Any) -> list[str]:
    """Validate one SSE event: `event:` must equal `data.type`, data must match its schema."""
    if not isinstance(payload, dict):
        return ["<root>: an event payload must be a JSON object"]
    kind = payload.get("type")
    problems = [] if kind == event_name else [f"event name {event_name!r} != data.type {kind!r}"]
    if kind == "ping":
        return problems + ([] if payload == {"type": "ping"} else ["ping: unexpected fields"])
    schema = STREAM_EVENT_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        return [*problems, f"unknown stream event type {kind!r}"]
    return problems + validate_anthropic_schema(schema, payload)


@cache
def _schema_validator(schema: str) -> jsonschema.Draft202012Validator:
    with _lock:
        root = {"$ref": f"#/components/schemas/{schema}", "components": _spec_dict()["components"]}
        return jsonschema.Draft202012Validator(root)


def _describe(error: Exception) -> str:
    parts = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.extend(f"  {getattr(d, 'message', d)!s:.300}" for d in details)
        cause = cause.__cause__
    return "\n".join(parts)
