"""Gemini errors (`google.rpc.Status` bodies, mid-stream error events, blocked prompts) -> `GatewayError`.

Gemini answers errors as `{"error": {"code": <HTTP status>, "message", "status": <google.rpc.Code
name>, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"},
QuotaFailure, ErrorInfo, Help, ...]}}`. It sends no rate-limit or request-id headers.

| upstream                                   | code               | reason                        | retry |
|--------------------------------------------|--------------------|-------------------------------|-------|
| 400 INVALID_ARGUMENT, other 4xx            | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| 400 whose message reports the token limit  | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       | no    |
| 400 + ErrorInfo API_KEY_* (bad key)        | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 400 FAILED_PRECONDITION (region, billing)  | INTERNAL           | UPSTREAM_ERROR                | no    |
| 401 UNAUTHENTICATED, 403 PERMISSION_DENIED | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 404 NOT_FOUND                              | NOT_FOUND          | UPSTREAM_NOT_FOUND            | no    |
| 429 RESOURCE_EXHAUSTED                     | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED         | yes   |
| 499 CANCELLED, 500, 503, 504, other 5xx    | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |

`retry_after` comes from the RetryInfo detail (`retryDelay`, a proto3 JSON Duration such as "27s"
or "1.500s"); QuotaFailure violations become QuotaViolations. A mid-stream `{"error": ...}` event is
classified by its `code` (or, failing that, its `status` name).

Messages never carry the API key or message contents: credential errors use a fixed text, other
upstream messages are scrubbed of key-like tokens (`AIza...`, `key=...`) and capped.
Metadata: provider, model, upstream_status (HTTP; not for stream events), upstream_code (the
google.rpc.Code name), upstream_reason (ErrorInfo.reason), upstream_request_id (RequestInfo).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.providers._errors import (
    CREDENTIALS,
    ErrorClass,
    compose_message,
    protocol_error,
    safe_message,
)

__all__ = [
    "content_filtered",
    "error_from_event",
    "error_from_response",
    "parse_duration",
    "protocol_error",
]

_SECRET = re.compile(r"AIza[0-9A-Za-z_\-]{10,}|\bkey=[^&\s\"']+|\bBearer\s+\S+", re.IGNORECASE)
_TYPE_PREFIX = "type.googleapis.com/google.rpc."

# What Gemini says when the prompt does not fit: "The input token count (1234567) exceeds the
# maximum number of tokens allowed (1048576)." (older models: "... exceeds the maximum context").
_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count", "context length")

# HTTP status implied by a google.rpc.Code name (mid-stream errors may carry only the name).
_STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def content_filtered(provider: str, model: str, block_reason: str) -> GatewayError:
    """INVALID_ARGUMENT / CONTENT_FILTERED: Gemini blocked the prompt (`promptFeedback.blockReason`)
    before generating anything. A filtered *answer* is a finish reason instead."""
    return GatewayError(
        f"{provider} blocked the prompt (blockReason {block_reason})",
        Code.INVALID_ARGUMENT,
        Reason.CONTENT_FILTERED,
        metadata={"provider": provider, "model": model, "block_reason": block_reason},
    )


def parse_duration(text: Any) -> float | None:
    """Seconds in a proto3 JSON Duration ("27s", "1.5s", "0.250s"); None when malformed."""
    if not isinstance(text, str) or not text.endswith("s"):
        return None
    try:
        seconds = float(text[:-1])
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def error_from_response(
    provider: str, model: str, status: int, headers: Mapping[str, str], body: bytes
) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
    error = _error_object(body)
    return _build(provider, model, status, error, headers.get("x-request-id") or "")


def error_from_event(provider: str, model: str, error: Any) -> GatewayError:
    """Map the `error` member of a `data: {"error": ...}` stream event (status 200 already sent)."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    if status is None:
        status = _STATUS_OF_CODE.get(str(error.get("status") or ""), 500)
    return _build(provider, model, status, error, "", mid_stream=True)


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}  # an HTML page from a proxy or load balancer: classify by status alone
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # streamGenerateContent without alt=sse wraps errors in an array
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error: dict[str, Any] = payload["error"]
        return error
    return {}


_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_PRECONDITION = ErrorClass(Code.INTERNAL, Reason.UPSTREAM_ERROR, False, "cannot serve this account or region")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def _classify(status: int, google_code: str, info_reason: str, message: str) -> ErrorClass:
    if status in (401, 403) or google_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return CREDENTIALS
    if info_reason.startswith("API_KEY_") or info_reason in ("CONSUMER_INVALID", "CONSUMER_SUSPENDED"):
        return CREDENTIALS  # Gemini answers a wrong key with 400 INVALID_ARGUMENT + API_KEY_INVALID
    if status == 429:
        return _RATE_LIMITED
    if status == 404:
        return _NOT_FOUND
    if status == 499 or status >= 500:
        return _UNAVAILABLE
    if 400 <= status < 500:
        if google_code == "FAILED_PRECONDITION":
            return _PRECONDITION
        lowered = message.lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return _CONTEXT
        return _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing a Gemini endpoint should send


@dataclass(slots=True)
class _Details:
    retry_after: float | None = None
    info_reason: str = ""
    request_id: str = ""
    quota: list[QuotaViolation] | None = None


def _details(items: Any) -> _Details:
    found = _Details()
    if not isinstance(items, list):
        return found
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type") or "").removeprefix(_TYPE_PREFIX)
        if kind == "RetryInfo":
            found.retry_after = parse_duration(item.get("retryDelay"))
        elif kind == "ErrorInfo":
            found.info_reason = str(item.get("reason") or "")
        elif kind == "RequestInfo":
            found.request_id = str(item.get("requestId") or "")
        elif kind == "QuotaFailure":
            found.quota = [
                QuotaViolation(
                    str(v.get("quotaMetric") or v.get("subject") or ""),
                    str(v.get("quotaId") or v.get("description") or ""),
                )
                for v in item.get("violations") or ()
                if isinstance(v, dict)
            ]
    return found


def _build(
    provider: str,
    model: str,
    status: int,
    error: dict[str, Any],
    request_id: str,
    *,
    mid_stream: bool = False,
) -> GatewayError:
    details = _details(error.get("details"))
    google_code = error.get("status")
    google_code = google_code if isinstance(google_code, str) else ""
    raw_message = error.get("message")
    message_text = raw_message if isinstance(raw_message, str) else ""
    kind = _classify(status, google_code, details.info_reason, message_text)

    metadata = {"provider": provider, "model": model}
    if not mid_stream:
        metadata["upstream_status"] = str(status)
    if google_code:
        metadata["upstream_code"] = google_code
    if details.info_reason:
        metadata["upstream_reason"] = details.info_reason
    request_id = details.request_id or request_id
    if request_id:
        metadata["upstream_request_id"] = request_id

    where = "during the stream" if mid_stream else f"with HTTP {status}"
    message = compose_message(provider, kind, where, safe_message(message_text, _SECRET))

    retry_after = details.retry_after if kind is _RATE_LIMITED or kind is _UNAVAILABLE else None
    quota: list[QuotaViolation] = []
    if kind is _RATE_LIMITED:
        quota = [v for v in details.quota or () if v.subject or v.description]
        if not quota:
            quota = [QuotaViolation(f"{provider}/{model}", "rate_limit")]
    return GatewayError(
        message,
        kind.code,
        kind.reason,
        retryable=kind.retryable,
        retry_after=retry_after,
        metadata=metadata,
        quota_violations=quota,
    )
