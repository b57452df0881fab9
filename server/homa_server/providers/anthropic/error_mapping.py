"""Anthropic HTTP errors and mid-stream `error` events -> `GatewayError` (DESIGN section 4).

Body: `{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`.

| upstream                                   | code               | reason                        | retry |
|--------------------------------------------|--------------------|-------------------------------|-------|
| 400 invalid_request_error, 413 too large   | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| 400 "prompt is too long", "exceed context" | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       | no    |
| 400 "... content filtering policy"         | INVALID_ARGUMENT   | CONTENT_FILTERED              | no    |
| 401 authentication, 403 permission         | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 402 billing_error                          | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      | no    |
| 404 not_found_error                        | NOT_FOUND          | UPSTREAM_NOT_FOUND            | no    |
| 429 rate_limit_error                       | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED         | yes   |
| 500 api_error, 504 timeout, 529 overloaded | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |

An upstream `x-should-retry: true|false` header overrides the retry column, as Anthropic's SDKs
do. Mid-stream `error` events have no status; it is inferred from `error.type`. Other 4xx are
UPSTREAM_INVALID_REQUEST, except 408 (a proxy's timeout), which is retried like a 5xx.

retry_after on 429: `retry-after-ms` / `retry-after`, else the latest reset time (RFC 3339) among
the exhausted `anthropic-ratelimit-*` limits (remaining "0"). 5xx answers honour `retry-after`.

Messages never carry the API key: credential errors use a fixed text, other upstream messages are
scrubbed of key-like tokens and capped. Metadata: provider, model, upstream_status (HTTP only),
upstream_request_id (`request-id` header, else the body's `request_id`), upstream_type.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
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

__all__ = ["error_from_event", "error_from_response", "parse_reset", "protocol_error", "rate_limit_delay"]

_SECRET = re.compile(r"\b(?:sk-ant-|sk-)[A-Za-z0-9_*\-]{4,}|\bBearer\s+\S+", re.IGNORECASE)
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")
_FILTER_MARKER = "content filtering policy"
# The limits Anthropic reports, each as anthropic-ratelimit-<name>-{limit,remaining,reset}.
_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")

# Status implied by a mid-stream error's `type` (Anthropic's documented status per type).
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_from_response(
    provider: str, model: str, status: int, headers: Mapping[str, str], body: bytes
) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
    payload = _payload(body)
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    return _build(provider, model, status, error, payload=payload, headers=headers)


def error_from_event(provider: str, model: str, payload: dict[str, Any]) -> GatewayError:
    """Map a mid-stream `event: error` payload (`{"type": "error", "error": {...}}`)."""
    error = payload.get("error")
    if not isinstance(error, dict):
        error = {"message": str(error)}
    status = _TYPE_STATUS.get(error.get("type") or "", 500)
    return _build(provider, model, status, error, payload=payload, headers={}, mid_stream=True)


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


_QUOTA = ErrorClass(
    Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "billing quota exhausted"
)
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_FILTERED = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False, "filtered the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def _classify(status: int, message: str) -> ErrorClass:
    if status in (401, 403):
        return CREDENTIALS
    if status == 402:
        return _QUOTA
    if status == 429:
        return _RATE_LIMITED
    if status == 404:
        return _NOT_FOUND
    if status >= 500 or status == 408:
        return _UNAVAILABLE
    if 400 <= status < 500:
        lowered = message.lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return _CONTEXT
        if _FILTER_MARKER in lowered:
            return _FILTERED
        return _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing the Messages API sends


def _build(
    provider: str,
    model: str,
    status: int,
    error: dict[str, Any],
    *,
    payload: dict[str, Any],
    headers: Mapping[str, str],
    mid_stream: bool = False,
) -> GatewayError:
    metadata = {"provider": provider, "model": model}
    if not mid_stream:
        metadata["upstream_status"] = str(status)
    request_id = headers.get("request-id") or payload.get("request_id")
    if isinstance(request_id, str) and request_id:
        metadata["upstream_request_id"] = request_id
    error_type = error.get("type")
    if isinstance(error_type, str) and error_type:
        metadata["upstream_type"] = error_type
    raw_message = error.get("message")
    upstream_message = raw_message if isinstance(raw_message, str) else ""
    kind = _classify(status, upstream_message)

    where = "during the stream" if mid_stream else f"with HTTP {status}"
    message = compose_message(provider, kind, where, safe_message(upstream_message, _SECRET))

    retry_after: float | None = None
    quota = []
    if kind is _RATE_LIMITED:
        retry_after = rate_limit_delay(headers)
        quota.append(QuotaViolation(f"{provider}/{model}", error_type or "rate_limit_error"))
    elif kind is _QUOTA:
        quota.append(QuotaViolation(f"{provider}/{model}", error_type or "billing_error"))
    elif kind is _UNAVAILABLE:
        retry_after = parse_retry_after(headers)

    # Anthropic's SDKs let the server overrule their retry decision; so do we.
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


def parse_reset(value: str, now: float) -> float | None:
    """Seconds from `now` (Unix time) until an RFC 3339 reset time; None when malformed.

    Past times give 0.0; a time without a zone is malformed (Anthropic always sends `Z`).
    """
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def rate_limit_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`retry-after-ms` / `retry-after`, else the latest reset among the exhausted limits.

    A limit is exhausted when its `anthropic-ratelimit-<limit>-remaining` is "0"; the caller has to
    wait until every exhausted limit has reset, hence the latest. Without an exhausted limit, None.
    """
    explicit = parse_retry_after(headers)
    if explicit is not None:
        return explicit
    clock = time.time() if now is None else now
    delays = []
    for limit in _LIMITS:
        if headers.get(f"anthropic-ratelimit-{limit}-remaining") != "0":
            continue
        reset = headers.get(f"anthropic-ratelimit-{limit}-reset")
        delay = parse_reset(reset, clock) if reset else None
        if delay is not None:
            delays.append(delay)
    return max(delays) if delays else None
