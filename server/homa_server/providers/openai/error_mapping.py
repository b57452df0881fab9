"""OpenAI HTTP errors and mid-stream error events -> `GatewayError` (DESIGN section 4).

| upstream                                  | code               | reason                          | retry |
|-------------------------------------------|--------------------|---------------------------------|-------|
| 400, 413, 422, other 4xx                  | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST        | no    |
| 400 code `context_length_exceeded`        | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED         | no    |
| 401, 403                                  | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED   | no    |
| 404                                       | NOT_FOUND          | UPSTREAM_NOT_FOUND              | no    |
| 408                                       | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT                | yes   |
| 409, 5xx                                  | UNAVAILABLE        | UPSTREAM_UNAVAILABLE            | yes   |
| 429 (`rate_limit_exceeded`, or no code)   | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED           | yes   |
| 429 `insufficient_quota`                  | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED        | no    |

An upstream `x-should-retry: true|false` header overrides the retry column, as OpenAI's SDKs do.
Mid-stream `{"error": {...}}` events have no status; one is inferred from `code`/`type`.

Messages never carry the API key or message contents: credential errors use a fixed text (OpenAI
echoes a masked key in them), other upstream messages are scrubbed of key-like tokens and capped.
Metadata: provider, model, upstream_status, upstream_request_id (`x-request-id`), upstream_type,
upstream_code, upstream_param.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.providers._errors import (
    CREDENTIALS,
    ErrorClass,
    compose_message,
    protocol_error,
    safe_message,
    should_retry,
)
from homa_server.providers._http import parse_retry_after

__all__ = ["error_from_event", "error_from_response", "parse_go_duration", "protocol_error"]

_SECRET = re.compile(r"\b(?:sk|rk|sess)-[A-Za-z0-9_*\-]{4,}|\bBearer\s+\S+", re.IGNORECASE)
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

# Status implied by a mid-stream error's `code`, then by its `type`.
_CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "invalid_api_key": 401,
    "model_not_found": 404,
}
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "requests": 429,
    "tokens": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 503,
}


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as "1s", "6m0s", "20ms" or "1h2m3.5s"; None when malformed."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    position = 0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        return None
    return total


def error_from_response(
    provider: str, model: str, status: int, headers: Mapping[str, str], body: bytes
) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
    error = _error_object(body)
    return _build(provider, model, status, error, headers)


def error_from_event(provider: str, model: str, error: Any) -> GatewayError:
    """Map the `error` member of a `data: {"error": ...}` stream event."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    status = _CODE_STATUS.get(code) if isinstance(code, str) else None
    if status is None:
        status = _TYPE_STATUS.get(error.get("type") or "", 500)
    return _build(provider, model, status, error, {}, mid_stream=True)


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):  # some OpenAI-compatible servers send {"error": "text"}
            return {"message": error}
    return {}


_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "quota exhausted")
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def _classify(status: int, upstream_code: str) -> ErrorClass:
    if status in (401, 403):
        return CREDENTIALS
    if status == 429:
        return _QUOTA if upstream_code == "insufficient_quota" else _RATE_LIMITED
    if status == 404:
        return _NOT_FOUND
    if status == 408:
        return _TIMEOUT
    if status == 409 or status >= 500:
        return _UNAVAILABLE
    if 400 <= status < 500:
        return _CONTEXT if upstream_code == "context_length_exceeded" else _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing an OpenAI endpoint should send


def _build(
    provider: str,
    model: str,
    status: int,
    error: dict[str, Any],
    headers: Mapping[str, str],
    *,
    mid_stream: bool = False,
) -> GatewayError:
    metadata = {"provider": provider, "model": model}
    if not mid_stream:
        metadata["upstream_status"] = str(status)
    request_id = headers.get("x-request-id")
    if request_id:
        metadata["upstream_request_id"] = request_id
    for key in ("type", "code", "param"):
        value = error.get(key)
        if isinstance(value, str | int) and value != "":
            metadata[f"upstream_{key}"] = str(value)
    code_value = error.get("code")
    upstream_code = code_value if isinstance(code_value, str) else ""
    kind = _classify(status, upstream_code)

    where = "during the stream" if mid_stream else f"with HTTP {status}"
    message = compose_message(provider, kind, where, safe_message(error.get("message"), _SECRET))

    retry_after: float | None = None
    if kind is _RATE_LIMITED:
        retry_after = _rate_limit_delay(headers, error.get("type"))
    elif kind is _UNAVAILABLE:
        retry_after = parse_retry_after(headers)
    quota = []
    if kind is _RATE_LIMITED or kind is _QUOTA:
        quota.append(QuotaViolation(f"{provider}/{model}", upstream_code or "rate_limit"))

    # OpenAI's SDKs let the server overrule their retry decision; so do we.
    retryable = should_retry(kind, headers)
    return GatewayError(
        message,
        kind.code,
        kind.reason,
        retryable=retryable,
        retry_after=retry_after,
        metadata=metadata,
        quota_violations=quota,
    )


def _rate_limit_delay(headers: Mapping[str, str], error_type: Any) -> float | None:
    """`retry-after-ms` / `retry-after`, else the reset time of the exhausted limit.

    OpenAI sends reset times as Go durations for both the request and the token limit. The one
    to wait for is the limit that is exhausted (remaining "0"; the longer if both are), else the
    one the error `type` names ("requests"/"tokens"), else requests, else tokens.
    """
    explicit = parse_retry_after(headers)
    if explicit is not None:
        return explicit
    resets = {
        dimension: parse_go_duration(headers.get(f"x-ratelimit-reset-{dimension}") or "")
        for dimension in ("requests", "tokens")
    }
    exhausted = [
        delay
        for dimension, delay in resets.items()
        if delay is not None and headers.get(f"x-ratelimit-remaining-{dimension}") == "0"
    ]
    if exhausted:
        return max(exhausted)
    if error_type in resets and resets[error_type] is not None:
        return resets[error_type]
    return resets["requests"] if resets["requests"] is not None else resets["tokens"]
