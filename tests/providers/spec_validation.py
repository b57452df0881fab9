"""Validate OpenAI traffic against the official OpenAPI spec (`provider-specs/openai`).

Requests are checked with openapi-core against `openapi.validation.json` (the variant whose
`nullable`/`discriminator` constructs validators understand; see provider-specs/README section
5.1). The spec is loaded once per process (about 0.5 s) and shared; loading is thread-safe, so
the fake upstream's server thread and the tests can both use it.

Responses and stream chunks that the fake sends are checked with jsonschema against the spec's
component schemas, so the fake cannot drift from OpenAI's shapes either.

The specs live next to the repository (`../shared/provider-specs`); `HOMA_PROVIDER_SPECS`
overrides the location.
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
    "OPENAI_HOST",
    "OPENAI_SPEC",
    "openai_api",
    "validate_openai_request",
    "validate_openai_schema",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
OPENAI_SPEC = _SPECS / "openai" / "openapi.validation.json"
# openapi-core matches requests against the spec's server URL (https://api.openai.com/v1), so
# requests are validated as if sent there, whatever address the fake listens on.
OPENAI_HOST = "https://api.openai.com"

_lock = threading.Lock()


# `oneOf`s whose branches overlap once the discriminator is dropped (provider-specs README 5.1), so
# that valid OpenAI bodies match two branches and fail. OpenAI picks the branch by `type`; `anyOf`
# keeps every branch's checks while accepting the overlap. Example: a Responses input message
# `{"role": "user", "content": [{"type": "input_text", ...}]}` is both an EasyInputMessage and an
# InputMessage.
_OVERLAPPING_ONE_OF = ("InputItem",)


@cache
def _spec_dict() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(OPENAI_SPEC.read_bytes())
    schemas = data["components"]["schemas"]
    for name in _OVERLAPPING_ONE_OF:
        schemas[name]["anyOf"] = schemas[name].pop("oneOf")
    return data


def openai_api() -> OpenAPI:
    """The loaded spec (built on first use, then shared)."""
    with _lock:
        return _openai_api()


@cache
def _openai_api() -> OpenAPI:
    return OpenAPI.from_dict(_spec_dict(), config=Config(spec_validator_cls=None))


def validate_openai_request(
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    content_type: str = "application/json",
    require_auth: bool = True,
) -> list[str]:
    """Validate one request; returns the problems found (empty when valid).

    Args:
        method: HTTP method, any case.
        path: the path as OpenAI sees it, including `/v1` (for example `/v1/chat/completions`).
        body: raw request body.
        headers: request headers.
        content_type: the body's media type.
        require_auth: check the Bearer security scheme. OpenAI-compatible servers without keys
            pass False, and then only a missing-credentials problem is ignored.
    """
    request = MockRequest(
        OPENAI_HOST,
        method.lower(),
        path,
        data=body.decode("utf-8") if body else None,
        content_type=content_type,
        headers=headers,
    )
    api = openai_api()
    problems = []
    for error in api.iter_request_errors(request):
        if not require_auth and isinstance(error, SecurityValidationError):
            continue
        problems.append(_describe(error))
    return problems


def validate_openai_schema(schema: str, instance: Any) -> list[str]:
    """Validate `instance` against `#/components/schemas/<schema>`; returns problems found."""
    validator = _schema_validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


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
