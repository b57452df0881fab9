"""Venice HTTP errors and in-stream error events -> `GatewayError` (DESIGN section 4).

Venice error bodies come in three shapes, all handled: `{"error": "text"}` (StandardError, sometimes
with `code` or `request_id`), validation failures that add `details` (a zod `_errors` tree, or a
string) and `issues` (`[{path, message}]`), and OpenAI-style `{"error": {message, type, param, code}}`
(context overflow; in-stream errors).

| upstream                              | code               | reason                        | retry |
|---------------------------------------|--------------------|-------------------------------|-------|
| 400 context overflow (see below)      | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       | no    |
| 400, 413, 415, other 4xx              | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| 422 content policy / moderation       | INVALID_ARGUMENT   | CONTENT_FILTERED              | no    |
| 422 other (media it cannot process)   | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| 401, 403                              | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 402 (no balance, key spend limit)     | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      | no    |
| 404, 410                              | NOT_FOUND          | UPSTREAM_NOT_FOUND            | no    |
| 408                                   | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT              | yes   |
| 429 rate limit, failed-request budget | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED         | yes   |
| 429 "model is currently overloaded"   | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |
| 409, 5xx (500, 502, 503, 504)         | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |

A context overflow is code `context_length_exceeded` (OpenAI-style body) or Venice's
TOO_MANY_TOKENS text ("exceeds the model's maximum context").

retry_after: the upstream's own (`retry_after` in a stream error, `Retry-After`), else for rate
limits the reset of the exhausted limit (see `rate_limits`).

Messages never carry the API key or message contents: credential errors use a fixed text, other
upstream messages are scrubbed of key-like tokens and capped. Metadata: provider, model,
upstream_status, upstream_request_id (`request_id` in the body, else the `x-request-id` header),
upstream_code, upstream_type, upstream_param.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.providers._errors import CREDENTIALS, ErrorClass, compose_message, safe_message
from homa_server.providers._http import parse_retry_after
from homa_server.providers.venice.rate_limits import limit_name, rate_limit_delay

__all__ = ["error_from_event", "error_from_response"]

# Key-like tokens: OpenAI-style `sk-...`, Venice `VENICE-INFERENCE-KEY-...`/`VENICE_ADMIN_KEY_...`, bearer.
_SECRET = re.compile(
    r"\b(?:sk|rk|sess)-[A-Za-z0-9_*\-]{4,}|\bVENICE[-_A-Z]*KEY[-_][A-Za-z0-9_*\-]{4,}|\bBearer\s+\S+",
    re.IGNORECASE,
)
_MAX_ISSUES = 3
_CONTEXT_TEXT = "maximum context"
_POLICY_TEXTS = ("content policy", "content moderation")
_OVERLOADED_TEXT = "overloaded"

# Status implied by an in-stream error's `code`, then its `type`.
_CODE_STATUS = {
    "model_overloaded": 503,
    "rate_limit_exceeded": 429,
    "context_length_exceeded": 400,
    "upstream_error": 502,
}
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "rate_limit_error": 429,
    "server_error": 500,
    "api_error": 500,
}


@dataclass(frozen=True, slots=True)
class _Upstream:
    """The useful fields of one error body, whatever its shape."""

    message: str = ""
    code: str = ""
    type: str = ""
    param: str = ""
    request_id: str = ""
    retry_after: float | None = None


_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "has no balance left")
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_OVERLOADED = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is overloaded")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_FILTERED = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False, "refused the prompt")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def error_from_response(
    provider: str, model: str, status: int, headers: Mapping[str, str], body: bytes
) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
    upstream = _parse_body(body)
    if not upstream.request_id:
        upstream = replace(upstream, request_id=headers.get("x-request-id") or "")
    return _build(provider, model, status, upstream, headers)


def error_from_event(provider: str, model: str, error: Any) -> GatewayError:
    """Map the `error` member of a `data: {"error": ...}` stream event (status inferred)."""
    upstream = _error_member(error)
    status = _CODE_STATUS.get(upstream.code) or _TYPE_STATUS.get(upstream.type, 500)
    return _build(provider, model, status, upstream, {}, mid_stream=True)


def _parse_body(body: bytes) -> _Upstream:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return _Upstream()
    if not isinstance(payload, dict):
        return _Upstream()
    upstream = _error_member(payload.get("error"))
    message = upstream.message
    issues = _issues(payload.get("issues")) or _details(payload.get("details"))
    if issues:
        message = f"{message} ({issues})" if message else issues
    return replace(
        upstream,
        message=message,
        code=upstream.code or _string(payload.get("code")),
        request_id=_string(payload.get("request_id")),
    )


def _error_member(error: Any) -> _Upstream:
    if isinstance(error, str):
        return _Upstream(message=error)
    if not isinstance(error, dict):
        return _Upstream()
    retry = error.get("retry_after")
    return _Upstream(
        message=_string(error.get("message")),
        code=_string(error.get("code")),
        type=_string(error.get("type")),
        param=_string(error.get("param")),
        retry_after=float(retry) if isinstance(retry, int | float) and retry >= 0 else None,
    )


def _issues(issues: Any) -> str:
    """`issues` ([{path: [...], message}]) as "a.b: message; ..." (at most a few)."""
    if not isinstance(issues, list):
        return ""
    found = []
    for issue in issues[:_MAX_ISSUES]:
        if isinstance(issue, dict) and isinstance(issue.get("message"), str):
            path = issue.get("path")
            where = ".".join(str(p) for p in path) if isinstance(path, list) and path else ""
            found.append(f"{where}: {issue['message']}" if where else issue["message"])
    return "; ".join(found)


def _details(details: Any) -> str:
    """A zod `_errors` tree (or a plain string) as "field: error; ..." (at most a few)."""
    if isinstance(details, str):
        return details
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", details)]
    while stack and len(found) < _MAX_ISSUES:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        for error in node.get("_errors") or ():
            if isinstance(error, str):
                found.append(f"{where}: {error}" if where else error)
        stack.extend(
            (f"{where}.{key}" if where else key, child)
            for key, child in reversed(node.items())
            if key != "_errors"
        )
    return "; ".join(found[:_MAX_ISSUES])


def _classify(status: int, upstream: _Upstream) -> ErrorClass:
    lowered = upstream.message.lower()
    if status in (401, 403):
        return CREDENTIALS
    if status == 402:
        return _QUOTA
    if status == 429:
        overloaded = upstream.code == "model_overloaded" or _OVERLOADED_TEXT in lowered
        return _OVERLOADED if overloaded else _RATE_LIMITED
    if status in (404, 410):
        return _NOT_FOUND
    if status == 408:
        return _TIMEOUT
    if status == 409 or status >= 500:
        return _UNAVAILABLE
    if status == 422 and any(text in lowered for text in _POLICY_TEXTS):
        return _FILTERED
    if 400 <= status < 500:
        context = upstream.code == "context_length_exceeded" or _CONTEXT_TEXT in lowered
        return _CONTEXT if context else _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing a Venice endpoint should send


def _build(
    provider: str,
    model: str,
    status: int,
    upstream: _Upstream,
    headers: Mapping[str, str],
    *,
    mid_stream: bool = False,
) -> GatewayError:
    metadata = {"provider": provider, "model": model}
    if not mid_stream:
        metadata["upstream_status"] = str(status)
    if upstream.request_id:
        metadata["upstream_request_id"] = upstream.request_id
    for key in ("code", "type", "param"):
        value = getattr(upstream, key)
        if value:
            metadata[f"upstream_{key}"] = value
    kind = _classify(status, upstream)

    where = "during the stream" if mid_stream else f"with HTTP {status}"
    message = compose_message(provider, kind, where, safe_message(upstream.message, _SECRET))

    retry_after: float | None = None
    if kind is _RATE_LIMITED:
        retry_after = upstream.retry_after
        if retry_after is None:
            retry_after = rate_limit_delay(headers, upstream.message)
    elif kind is _OVERLOADED or kind is _UNAVAILABLE:
        retry_after = upstream.retry_after if upstream.retry_after is not None else parse_retry_after(headers)
    quota = []
    if kind is _RATE_LIMITED or kind is _QUOTA:
        what = "insufficient_balance" if kind is _QUOTA else limit_name(upstream.message, headers)
        quota.append(QuotaViolation(f"{provider}/{model}", what))
    return GatewayError(
        message,
        kind.code,
        kind.reason,
        retryable=kind.retryable,
        retry_after=retry_after,
        metadata=metadata,
        quota_violations=quota,
    )


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""
