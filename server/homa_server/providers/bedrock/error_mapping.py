"""Bedrock HTTP errors and event-stream exception frames -> `GatewayError` (DESIGN section 4).

Bedrock (AWS rest-json) names the error in the `x-amzn-ErrorType` header
(`ThrottlingException:http://internal.amazon.com/coral/...`; the part before ':' is the code, as in
botocore), or in a body `__type` / `code`; the body is `{"message": "..."}` (some front ends send
`Message`). Inside a 200 ConverseStream, errors are `:message-type exception` frames whose
`:exception-type` is the lower-camel code (`throttlingException`). Both go through one table:

| error code (HTTP status)                             | code / reason                                 | retry
|------------------------------------------------------|-----------------------------------------------|------
| ValidationException (400)                            | INVALID_ARGUMENT / UPSTREAM_INVALID_REQUEST   | no
| ValidationException: input too long                  | INVALID_ARGUMENT / CONTEXT_LENGTH_EXCEEDED    | no
| ServiceQuotaExceededException (400)                  | RESOURCE_EXHAUSTED / UPSTREAM_QUOTA_EXHAUSTED | no
| AccessDenied- (403), UnrecognizedClient-,            | INTERNAL / UPSTREAM_CREDENTIALS_REJECTED      | no
|   InvalidSignature-, ExpiredToken-, ...; any 401/403 |                                               |
| ResourceNotFoundException (404)                      | NOT_FOUND / UPSTREAM_NOT_FOUND                | no
| ModelTimeoutException (408)                          | DEADLINE_EXCEEDED / UPSTREAM_TIMEOUT          | yes
| ModelError- (424), ModelStreamErrorException         | UNAVAILABLE / UPSTREAM_UNAVAILABLE            | yes
| ThrottlingException, ModelNotReadyException (429)    | RESOURCE_EXHAUSTED / UPSTREAM_RATE_LIMITED    | yes
| InternalServer- (500), ServiceUnavailable- (503),    | UNAVAILABLE / UPSTREAM_UNAVAILABLE            | yes
|   other 5xx, ConflictException (409)                 |                                               |
| other 4xx                                            | INVALID_ARGUMENT / UPSTREAM_INVALID_REQUEST   | no

Bedrock sends no rate-limit or retry headers. Throttling therefore carries the configured
`throttling_retry_after_s` (default 1 s) as `retry_after`, unless a `Retry-After` header is present.

Messages never carry credentials: credential errors use a fixed text (AWS messages may quote the
access key id or the canonical request), other upstream messages are scrubbed of access key ids
and bearer tokens and capped. Metadata: provider, model, upstream_status (HTTP errors only),
upstream_request_id (`x-amzn-RequestId`), upstream_type (the error code).
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
)
from homa_server.providers._http import parse_retry_after

__all__ = ["error_from_exception", "error_from_response", "protocol_error"]

# AWS access key ids (AKIA/ASIA...), Bedrock API keys (ABSK...), bearer tokens, signatures.
_SECRET = re.compile(
    r"\b(?:AKIA|ASIA|ABSK)[A-Za-z0-9+/=]{12,}|\bBearer\s+\S+|\bSignature=[0-9a-f]+|\bCredential=\S+",
    re.IGNORECASE,
)
_CREDENTIALS_HINT = "check its AWS credentials, API key, region and model access"
# Lower-cased fragments of Bedrock ValidationException messages about the context window, e.g.
# "Input is too long for requested model." or "prompt is too long: 210000 tokens > 200000 maximum".
_CONTEXT_HINTS = (
    "too long",
    "context length",
    "context window",
    "maximum context",
    "too many input tokens",
    "too many tokens",
)
# Error codes that mean "the gateway's credentials were refused", whatever the status.
_CREDENTIAL_CODES = frozenset(
    {
        "accessdeniedexception",
        "unrecognizedclientexception",
        "invalidsignatureexception",
        "signaturedoesnotmatch",
        "incompletesignatureexception",
        "missingauthenticationtokenexception",
        "expiredtokenexception",
        "invalidclienttokenid",
        "unauthorizedexception",
        "unauthorizedoperation",
    }
)


_QUOTA = ErrorClass(Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False, "quota exceeded")
_RATE_LIMITED = ErrorClass(
    Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True, "throttled the request"
)
_NOT_FOUND = ErrorClass(Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False, "does not know the resource")
_TIMEOUT = ErrorClass(Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True, "timed out")
_UNAVAILABLE = ErrorClass(Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True, "is unavailable")
_CONTEXT = ErrorClass(Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False, "rejected the request")
_INVALID = ErrorClass(Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False, "rejected the request")
_UNEXPECTED = ErrorClass(Code.UNKNOWN, Reason.UPSTREAM_ERROR, False, "answered unexpectedly")

_BY_CODE: dict[str, ErrorClass] = {
    "validationexception": _INVALID,
    "servicequotaexceededexception": _QUOTA,
    "resourcenotfoundexception": _NOT_FOUND,
    "modeltimeoutexception": _TIMEOUT,
    "modelerrorexception": _UNAVAILABLE,
    "modelstreamerrorexception": _UNAVAILABLE,
    "throttlingexception": _RATE_LIMITED,
    "modelnotreadyexception": _RATE_LIMITED,
    "internalserverexception": _UNAVAILABLE,
    "serviceunavailableexception": _UNAVAILABLE,
    "conflictexception": _UNAVAILABLE,
}


def error_from_response(
    provider: str,
    model: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    throttle_delay: float,
) -> GatewayError:
    """Map a non-2xx HTTP response (`headers` must be case-insensitive, like `httpx.Headers`).

    Args:
        throttle_delay: `retry_after` for throttling when no `Retry-After` header is present.
    """
    payload = _json_object(body)
    error_type = _error_type(headers.get("x-amzn-errortype", ""), payload)
    message = payload.get("message", payload.get("Message"))
    return _build(
        provider,
        model,
        error_type,
        message,
        status=status,
        request_id=headers.get("x-amzn-requestid", ""),
        retry_after=parse_retry_after(headers),
        throttle_delay=throttle_delay,
    )


def error_from_exception(
    provider: str,
    model: str,
    error_type: str,
    message: Any,
    *,
    request_id: str,
    throttle_delay: float,
) -> GatewayError:
    """Map an exception (or error) frame of a 200 event stream.

    Args:
        error_type: `:exception-type` (e.g. `throttlingException`) or `:error-code`.
        message: the frame's message (payload `message`, or `:error-message`).
        request_id: the stream's `x-amzn-RequestId`.
    """
    return _build(
        provider,
        model,
        error_type,
        message,
        status=None,
        request_id=request_id,
        retry_after=None,
        throttle_delay=throttle_delay,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error_type(header: str, payload: dict[str, Any]) -> str:
    if header:
        return header.split(":", 1)[0].strip()
    for key in ("__type", "code", "Code"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            # awsJson-style "com.amazon.coral.service#ValidationException"
            return value.rsplit("#", 1)[-1].split(":", 1)[0]
    return ""


def _classify(error_code: str, status: int | None, message: str) -> ErrorClass:
    lowered = error_code.lower()
    if lowered in _CREDENTIAL_CODES or status in (401, 403):
        return CREDENTIALS
    kind = _BY_CODE.get(lowered)
    if kind is None:
        kind = _by_status(status)
    if kind is _INVALID:
        text = message.lower()
        if any(hint in text for hint in _CONTEXT_HINTS):
            return _CONTEXT
    return kind


def _by_status(status: int | None) -> ErrorClass:
    if status is None:
        return _UNAVAILABLE  # an unnamed error inside a stream: the upstream failed mid-answer
    if status == 429:
        return _RATE_LIMITED
    if status == 404:
        return _NOT_FOUND
    if status == 408:
        return _TIMEOUT
    if status == 409 or status >= 500:
        return _UNAVAILABLE
    if 400 <= status < 500:
        return _INVALID
    return _UNEXPECTED


def _build(
    provider: str,
    model: str,
    error_type: str,
    raw_message: Any,
    *,
    status: int | None,
    request_id: str,
    retry_after: float | None,
    throttle_delay: float,
) -> GatewayError:
    upstream_message = raw_message if isinstance(raw_message, str) else ""
    kind = _classify(error_type, status, upstream_message)
    metadata = {"provider": provider, "model": model}
    if status is not None:
        metadata["upstream_status"] = str(status)
    if request_id:
        metadata["upstream_request_id"] = request_id
    if error_type:
        metadata["upstream_type"] = error_type

    where = f"with HTTP {status}" if status is not None else "during the stream"
    label = f"{error_type}, {where}" if error_type else where
    message = compose_message(
        provider,
        kind,
        label,
        safe_message(upstream_message, _SECRET),
        hint=_CREDENTIALS_HINT,
    )

    delay: float | None = None
    quota: list[QuotaViolation] = []
    if kind is _RATE_LIMITED:
        delay = retry_after if retry_after is not None else throttle_delay
        quota.append(QuotaViolation(f"{provider}/{model}", error_type or "throttling"))
    elif kind is _QUOTA:
        quota.append(QuotaViolation(f"{provider}/{model}", error_type))
    elif kind is _UNAVAILABLE:
        delay = retry_after
    return GatewayError(
        message,
        kind.code,
        kind.reason,
        retryable=kind.retryable,
        retry_after=delay,
        metadata=metadata,
        quota_violations=quota,
    )
