"""Cohere HTTP errors, mid-stream failures and failed finishes -> `GatewayError` (DESIGN section 4).

Cohere's error body is `{"id"?: str, "message": str}` for every status (spec: components/responses).

| upstream                                      | code               | reason                        | retry |
|-----------------------------------------------|--------------------|-------------------------------|-------|
| 400, 422, other 4xx                           | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| 400/422 "too many tokens: ..."                | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       | no    |
| 4xx "blocked ..." (content filter)            | INVALID_ARGUMENT   | CONTENT_FILTERED              | no    |
| 401, 403, 498 (invalid token)                 | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 402 (payment required)                        | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      | no    |
| 404                                           | NOT_FOUND          | UPSTREAM_NOT_FOUND            | no    |
| 408                                           | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT              | yes   |
| 429 (per second/minute/hour, or no window)    | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED         | yes   |
| 429 "... / day" or "... / month" (trial keys) | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      | no    |
| 499 (cancelled; not by us, we would not see it) | UNAVAILABLE      | UPSTREAM_UNAVAILABLE          | yes   |
| 501 (feature not implemented)                 | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | no    |
| 409, 500, 502, 503, 504, other 5xx            | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |
| finish_reason ERROR / `{"message"}` mid-stream | UNAVAILABLE       | UPSTREAM_ERROR                | yes   |
| finish_reason TIMEOUT                         | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT              | yes   |

Retry delay of a 429: Cohere documents no rate-limit headers. A `retry-after` header is honoured if
one appears; otherwise the window named in the message ("20 API calls / minute") gives the delay
(the window length, an upper bound for a fixed window), else `DEFAULT_RETRY_AFTER_S`.

Messages never carry the API key or message contents: credential errors use a fixed text, other
upstream messages have the configured key and bearer tokens redacted and are capped. Metadata:
provider, model, upstream_status, upstream_request_id (the body's `id`, else the
`x-debug-trace-id` header Cohere sends, which is not in the spec).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.providers._errors import (
    CREDENTIALS,
    MAX_MESSAGE,
    ErrorClass,
    compose_message,
    protocol_error,
)
from homa_server.providers._http import parse_retry_after

__all__ = ["DEFAULT_RETRY_AFTER_S", "CohereErrors"]

DEFAULT_RETRY_AFTER_S = 1.0
_BEARER = re.compile(r"\bBearer\s+\S+", re.IGNORECASE)
_WINDOW = re.compile(r"(?:/|\bper)\s*(second|minute|hour|day|month)\b", re.IGNORECASE)
_WINDOW_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_QUOTA_WINDOWS = frozenset({"day", "month"})


_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "quota exhausted")
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_NOT_IMPLEMENTED = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, False, "does not implement this")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_FILTERED = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False, "filtered the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_FAILED = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_ERROR, True, "failed to generate")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


class CohereErrors:
    """Builds the errors of one provider instance (its name and key are fixed at construction).

    Args:
        provider: the instance name, for messages and metadata.
        secret: the API key, redacted from any upstream text that echoes it.
    """

    __slots__ = ("_provider", "_secret")

    def __init__(self, provider: str, secret: str | None) -> None:
        self._provider = provider
        self._secret = secret or None

    def from_response(self, model: str, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
        error = _error_object(body)
        message = error.get("message")
        text = message if isinstance(message, str) else ""
        window = _window(text) if status == 429 else None
        kind = _classify(status, text, window)
        metadata = self._metadata(model, error, headers)
        metadata["upstream_status"] = str(status)
        retry_after: float | None = None
        if kind is _RATE_LIMITED:
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = _WINDOW_SECONDS.get(window or "", DEFAULT_RETRY_AFTER_S)
        elif kind is _UNAVAILABLE:
            retry_after = parse_retry_after(headers)
        quota = []
        if kind is _RATE_LIMITED or kind is _QUOTA:
            description = f"requests per {window}" if window else "rate limit"
            quota.append(QuotaViolation(f"{self._provider}/{model}", description))
        return self._build(kind, f"with HTTP {status}", text, metadata, retry_after=retry_after, quota=quota)

    def from_stream_payload(self, model: str, payload: Mapping[str, Any]) -> GatewayError:
        """Map an error object (`{"message": ...}`) that arrived as an event of a 200 stream."""
        message = payload.get("message")
        text = message if isinstance(message, str) else ""
        kind = _CONTEXT if _is_context(text) else _FAILED
        metadata = self._metadata(model, payload, {})
        return self._build(kind, "during the stream", text, metadata)

    def from_finish(self, model: str, raw_reason: str, detail: Any, response_id: str) -> GatewayError:
        """Map a finish_reason of ERROR or TIMEOUT (with `delta.error` / no detail)."""
        kind = _TIMEOUT if raw_reason == "TIMEOUT" else _FAILED
        metadata = {"provider": self._provider, "model": model, "upstream_finish_reason": raw_reason}
        if response_id:
            metadata["upstream_request_id"] = response_id
        text = detail if isinstance(detail, str) else ""
        return self._build(kind, f"finish_reason {raw_reason}", text, metadata)

    def protocol(self, detail: str) -> GatewayError:
        """The upstream broke Cohere's protocol (bad JSON, wrong shape, wrong content type); see
        `_errors.protocol_error`."""
        return protocol_error(self._provider, detail)

    def _metadata(self, model: str, error: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
        metadata = {"provider": self._provider, "model": model}
        request_id = error.get("id")
        if not isinstance(request_id, str) or not request_id:
            request_id = headers.get("x-debug-trace-id")
        if request_id:
            metadata["upstream_request_id"] = request_id
        return metadata

    def _build(
        self,
        kind: ErrorClass,
        where: str,
        text: str,
        metadata: dict[str, str],
        *,
        retry_after: float | None = None,
        quota: list[QuotaViolation] | None = None,
    ) -> GatewayError:
        message = compose_message(self._provider, kind, where, self._redact(text))
        return GatewayError(
            message,
            kind.code,
            kind.reason,
            retryable=kind.retryable,
            retry_after=retry_after,
            metadata=metadata,
            quota_violations=quota or [],
        )

    def _redact(self, text: str) -> str:
        if not text:
            return ""
        if self._secret is not None and self._secret in text:
            text = text.replace(self._secret, "[redacted]")
        text = _BEARER.sub("[redacted]", text)
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def _classify(status: int, text: str, window: str | None) -> ErrorClass:
    if status in (401, 403, 498):
        return CREDENTIALS
    if status == 429:
        return _QUOTA if window in _QUOTA_WINDOWS else _RATE_LIMITED
    if status == 402:
        return _QUOTA
    if status == 404:
        return _NOT_FOUND
    if status == 408:
        return _TIMEOUT
    if status == 501:
        return _NOT_IMPLEMENTED
    if status in (409, 499) or status >= 500:
        return _UNAVAILABLE
    if 400 <= status < 500:
        if _is_context(text):
            return _CONTEXT
        if text[:7].lower() == "blocked":
            return _FILTERED
        return _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing Cohere's API sends


def _is_context(text: str) -> bool:
    # Cohere's documented messages: "too many tokens: total number of tokens in the prompt cannot
    # exceed ...", "too many tokens: max tokens must be less than or equal to ...".
    return text[:15].lower() == "too many tokens"


def _window(text: str) -> str | None:
    match = _WINDOW.search(text)
    return match.group(1).lower() if match else None


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}
