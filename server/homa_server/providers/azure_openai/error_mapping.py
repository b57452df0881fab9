"""Azure OpenAI HTTP errors and mid-stream error events -> `GatewayError` (DESIGN section 4).

| upstream                                             | code               | reason                        |
|------------------------------------------------------|--------------------|-------------------------------|
| 400 `content_filter` / ResponsibleAIPolicyViolation  | INVALID_ARGUMENT   | CONTENT_FILTERED              |
| 400 `context_length_exceeded`                        | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       |
| other 400, 413, 415, 422, other 4xx                  | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      |
| 401, 403                                             | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED |
| 404 (`DeploymentNotFound`, unknown path/api-version) | NOT_FOUND          | UPSTREAM_NOT_FOUND            |
| 408                                                  | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT (retry)      |
| 409, 5xx                                             | UNAVAILABLE        | UPSTREAM_UNAVAILABLE (retry)  |
| 429                                                  | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED (retry) |
| 429 `insufficient_quota`                             | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      |

Azure's body is `{"error": {"code", "message", "param", "type", "inner_error"}}`; live traffic spells
the inner object `innererror` with `content_filter_result`, and both spellings are read. `code` is
often the HTTP status as a string ("429", "401"); mid-stream errors have no status, so one is
inferred from `code`, then `type`.

Retry delay on 429/5xx: `retry-after-ms`, else `retry-after`, else the "retry after N seconds"
that Azure writes into its 429 messages.

Messages never carry credentials or message contents: credential errors use a fixed text, other
upstream messages are scrubbed of key- and token-like strings and capped. Metadata: provider,
model, deployment, upstream_status, upstream_request_id (`apim-request-id`, else `x-request-id`),
upstream_region (`x-ms-region`), upstream_code / upstream_type / upstream_param, and for content
filtering `filtered_categories`.
"""

from __future__ import annotations

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
from homa_server.providers._http import parse_retry_after

__all__ = ["Origin", "error_from_event", "error_from_response", "protocol_error"]

# Azure keys are 32 hex characters or 84 alphanumerics; Entra tokens are JWTs.
_SECRET = re.compile(r"\bBearer\s+\S+|\beyJ[\w-]{8,}\.[\w-]+\.[\w-]*|\b[0-9a-fA-F]{32}\b|\b[A-Za-z0-9]{84}\b")
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)
_CREDENTIALS_HINT = "check its api_key and options.auth settings"

_CONTENT_FILTER_CODES = frozenset({"content_filter", "ResponsibleAIPolicyViolation"})
# Status implied by a mid-stream error's `code`, then by its `type`.
_CODE_STATUS = {
    "content_filter": 400,
    "context_length_exceeded": 400,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "DeploymentNotFound": 404,
    "invalid_api_key": 401,
}
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "server_error": 500,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who made the failed call: provider instance, homa model name and Azure deployment."""

    provider: str
    model: str
    deployment: str


_FILTERED = ErrorClass(
    Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False, "refused the prompt (content filter)"
)
_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "quota exhausted")
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the deployment")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def error_from_response(origin: Origin, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
    return _build(origin, status, _error_object(body), headers, mid_stream=False)


def error_from_event(origin: Origin, error: Any) -> GatewayError:
    """Map the `error` member of a `data: {"error": ...}` stream event."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    status: int | None = None
    if isinstance(code, str):
        status = int(code) if code.isdigit() else _CODE_STATUS.get(code)
    elif isinstance(code, int):
        status = code
    if status is None:
        status = _TYPE_STATUS.get(str(error.get("type") or ""), 500)
    return _build(origin, status, error, {}, mid_stream=True)


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return {}


def _inner(error: Mapping[str, Any]) -> dict[str, Any]:
    inner = error.get("inner_error") or error.get("innererror")
    return inner if isinstance(inner, dict) else {}


def _classify(status: int, upstream_code: str, inner_code: str) -> ErrorClass:
    if upstream_code in _CONTENT_FILTER_CODES or inner_code in _CONTENT_FILTER_CODES:
        return _FILTERED
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
    return _UNEXPECTED  # 1xx/3xx: nothing this API should send


def _build(
    origin: Origin,
    status: int,
    error: dict[str, Any],
    headers: Mapping[str, str],
    *,
    mid_stream: bool,
) -> GatewayError:
    provider = origin.provider
    metadata = {"provider": provider, "model": origin.model, "deployment": origin.deployment}
    if not mid_stream:
        metadata["upstream_status"] = str(status)
    request_id = headers.get("apim-request-id") or headers.get("x-request-id")
    if request_id:
        metadata["upstream_request_id"] = request_id
    region = headers.get("x-ms-region")
    if region:
        metadata["upstream_region"] = region
    for key in ("type", "code", "param"):
        value = error.get(key)
        if isinstance(value, str | int) and value != "":
            metadata[f"upstream_{key}"] = str(value)
    code_value = error.get("code")
    upstream_code = code_value if isinstance(code_value, str) else ""
    inner = _inner(error)
    inner_code = inner.get("code")
    kind = _classify(status, upstream_code, inner_code if isinstance(inner_code, str) else "")

    where = "during the stream" if mid_stream else f"with HTTP {status}"
    message = compose_message(
        provider,
        kind,
        where,
        safe_message(error.get("message"), _SECRET),
        hint=_CREDENTIALS_HINT,
    )

    if kind is _FILTERED:
        categories = _filtered_categories(inner)
        if categories:
            metadata["filtered_categories"] = categories
    retry_after: float | None = None
    if kind is _RATE_LIMITED or kind is _UNAVAILABLE:
        retry_after = parse_retry_after(headers)
        if retry_after is None and kind is _RATE_LIMITED:
            retry_after = _retry_from_message(error.get("message"))
    quota = []
    if kind is _RATE_LIMITED or kind is _QUOTA:
        quota.append(QuotaViolation(f"{provider}/{origin.deployment}", upstream_code or "rate_limit"))
    return GatewayError(
        message,
        kind.code,
        kind.reason,
        retryable=kind.retryable,
        retry_after=retry_after,
        metadata=metadata,
        quota_violations=quota,
    )


def _filtered_categories(inner: Mapping[str, Any]) -> str:
    """Comma-separated categories whose `filtered` is true (spec and live-traffic spellings)."""
    results = inner.get("content_filter_results") or inner.get("content_filter_result")
    if not isinstance(results, dict):
        return ""
    filtered = (
        name for name, result in results.items() if isinstance(result, dict) and result.get("filtered")
    )
    return ",".join(sorted(filtered))


def _retry_from_message(message: Any) -> float | None:
    if not isinstance(message, str):
        return None
    match = _RETRY_IN_MESSAGE.search(message)
    return float(match.group(1)) if match else None
