"""Ollama HTTP errors and mid-stream error lines -> `GatewayError` (DESIGN section 4).

Ollama answers every error with `{"error": "<text>"}` (errors.mdx): as an `application/json` body
with the status, or, once a stream has started, as one NDJSON line while the status stays 200.
There is no error code field, so the class comes from the status and, where the status is not
enough, from the text:

| upstream                                   | code               | reason                        | retry |
|--------------------------------------------|--------------------|-------------------------------|-------|
| 400, 413, 422, other 4xx                   | INVALID_ARGUMENT   | UPSTREAM_INVALID_REQUEST      | no    |
| any error whose text is the context length | INVALID_ARGUMENT   | CONTEXT_LENGTH_EXCEEDED       | no    |
| 401, 403                                   | INTERNAL           | UPSTREAM_CREDENTIALS_REJECTED | no    |
| 404 `model "x" not found, try pulling it`  | NOT_FOUND          | UPSTREAM_NOT_FOUND            | no    |
| 408                                        | DEADLINE_EXCEEDED  | UPSTREAM_TIMEOUT              | yes   |
| 429 (Ollama Cloud)                         | RESOURCE_EXHAUSTED | UPSTREAM_RATE_LIMITED         | yes   |
| 429 "... usage limit ..." (plan quota)     | RESOURCE_EXHAUSTED | UPSTREAM_QUOTA_EXHAUSTED      | no    |
| 5xx (500; 502 cloud unreachable; 503)      | UNAVAILABLE        | UPSTREAM_UNAVAILABLE          | yes   |
| mid-stream `{"error"}` line                | as its text says, else like a 500             |

Why a mid-stream line defaults to 500: Ollama's own `streamResponse` writes an error that carries
no status as HTTP 500 when nothing was sent yet; the same failure (a runner crash, say) only turns
into an NDJSON line because the headers were already out.

Rate limits: Ollama documents no rate-limit headers. `Retry-After` is honoured when present (a
proxy in front of Ollama may send it); otherwise the provider's `rate_limit_retry_after_s` option
supplies the RetryInfo delay. Cloud plan limits ("you have reached your hourly/session/weekly usage
limit, ... upgrade") are quota, not rate: retrying soon cannot succeed.

Messages never carry credentials: 401/403 use a fixed text, other upstream texts are scrubbed of
Bearer tokens and the configured key, and capped. Metadata: provider, model, upstream_status (HTTP
errors only), upstream_request_id (`x-request-id`, or the `(ref: ...)` id Ollama Cloud puts in its
messages).
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

__all__ = ["ErrorMapper", "protocol_error"]

_BEARER = re.compile(r"\bBearer\s+\S+", re.IGNORECASE)
_CONTEXT_HINTS = ("context length", "context window", "context size", "maximum context")
_USAGE_LIMIT_HINT = "usage limit"
_REF_OPEN = "(ref: "
_STREAM_STATUS = 500  # what Ollama would have answered had the headers not been sent yet


_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "usage limit reached")
_RATE_LIMITED = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "rate limit reached")
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly", False)


def _classify(status: int, text: str) -> ErrorClass:
    lowered = text.lower()
    if status in (401, 403):
        return CREDENTIALS
    if status == 429:
        return _QUOTA if _USAGE_LIMIT_HINT in lowered else _RATE_LIMITED
    if status == 404:
        return _NOT_FOUND
    if status == 408:
        return _TIMEOUT
    if status >= 400 and any(hint in lowered for hint in _CONTEXT_HINTS):
        # A context overflow is the caller's to fix, whether Ollama reports it as 400, 500 or
        # mid-stream: retrying the same prompt cannot succeed.
        return _CONTEXT
    if status >= 500:
        return _UNAVAILABLE
    if 400 <= status < 500:
        return _INVALID
    return _UNEXPECTED  # 1xx/3xx: nothing the Ollama API sends


class ErrorMapper:
    """Maps Ollama failures for one provider instance (built once, shared by every call).

    Args:
        provider: instance name (errors and metadata).
        rate_limit_retry_after: RetryInfo delay for a 429 without `Retry-After`, or None.
        secret: the configured API key, removed from any upstream text that might echo it.
    """

    __slots__ = ("_default_retry", "_provider", "_secret")

    def __init__(self, provider: str, rate_limit_retry_after: float | None, secret: str | None) -> None:
        self._provider = provider
        self._default_retry = rate_limit_retry_after
        self._secret = secret or None

    def protocol_error(self, detail: str) -> GatewayError:
        """See `protocol_error`."""
        return protocol_error(self._provider, detail)

    def from_response(self, model: str, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`)."""
        text = _error_text(body)
        if text is None and status == 404:
            # Not Ollama's JSON: gin's "404 page not found" for a path it does not serve.
            text = "the server does not serve this API path; check base_url (the server root)"
        return self._build(model, status, text or "", headers, mid_stream=False)

    def from_line(self, model: str, error: Any) -> GatewayError:
        """Map the `error` member of a `{"error": ...}` NDJSON line (mid-stream, status 200)."""
        text = error if isinstance(error, str) else orjson.dumps(error).decode("utf-8", "replace")
        return self._build(model, _STREAM_STATUS, text, {}, mid_stream=True)

    def _build(
        self, model: str, status: int, text: str, headers: Mapping[str, str], *, mid_stream: bool
    ) -> GatewayError:
        provider = self._provider
        kind = _classify(status, text)
        metadata = {"provider": provider, "model": model}
        if not mid_stream:
            metadata["upstream_status"] = str(status)
        request_id = headers.get("x-request-id") or _reference(text)
        if request_id:
            metadata["upstream_request_id"] = request_id

        where = "during the stream" if mid_stream else f"with HTTP {status}"
        message = compose_message(provider, kind, where, self._safe(text))

        retry_after: float | None = None
        quota: list[QuotaViolation] = []
        if kind is _RATE_LIMITED:
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = self._default_retry
            quota.append(QuotaViolation(f"{provider}/{model}", "rate_limit"))
        elif kind is _QUOTA:
            quota.append(QuotaViolation(f"{provider}/{model}", "usage_limit"))
        elif kind is _UNAVAILABLE:
            retry_after = parse_retry_after(headers)
        return GatewayError(
            message,
            kind.code,
            kind.reason,
            retryable=kind.retryable,
            retry_after=retry_after,
            metadata=metadata,
            quota_violations=quota,
        )

    def _safe(self, text: str) -> str:
        if not text:
            return ""
        cleaned = _BEARER.sub("Bearer [redacted]", text)
        if self._secret is not None and self._secret in cleaned:
            cleaned = cleaned.replace(self._secret, "[redacted]")
        if len(cleaned) > MAX_MESSAGE:
            cleaned = cleaned[:MAX_MESSAGE] + "..."
        return cleaned


def _error_text(body: bytes) -> str | None:
    """The `error` text of an Ollama error body, or None when the body is not one."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, str):
            return error
        if error is not None:  # an OpenAI-style object from a proxy in front of Ollama
            message = error.get("message") if isinstance(error, dict) else None
            return message if isinstance(message, str) else orjson.dumps(error).decode()
    return None


def _reference(text: str) -> str:
    """The id in Ollama Cloud's "... (ref: 06d81c91-...)" messages, or ""."""
    start = text.rfind(_REF_OPEN)
    if start < 0:
        return ""
    start += len(_REF_OPEN)
    end = text.find(")", start)
    return text[start:end].strip() if end > start else ""
