"""The gateway's one error hierarchy, independent of any transport.

Everything below `rpc/` raises `GatewayError` (or a subclass); `rpc/status.py` is the only place that
turns one into a gRPC status with `google.rpc.Status` details. Each error carries a `Reason`: a stable
UPPER_SNAKE identifier that callers may branch on. Every reason is listed in `docs/errors.md`
(a test fails when one is missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Code(IntEnum):
    """Canonical status codes (the numeric values of google.rpc.Code / grpc.StatusCode)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Reason(StrEnum):
    """Stable machine-readable error reasons (ErrorInfo.reason, domain `homa`)."""

    INVALID_REQUEST = "INVALID_REQUEST"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    CAPABILITY_NOT_SUPPORTED = "CAPABILITY_NOT_SUPPORTED"
    CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    UPSTREAM_INVALID_REQUEST = "UPSTREAM_INVALID_REQUEST"
    UPSTREAM_NOT_FOUND = "UPSTREAM_NOT_FOUND"
    UPSTREAM_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
    UPSTREAM_QUOTA_EXHAUSTED = "UPSTREAM_QUOTA_EXHAUSTED"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    UPSTREAM_STREAM_INTERRUPTED = "UPSTREAM_STREAM_INTERRUPTED"
    UPSTREAM_CREDENTIALS_REJECTED = "UPSTREAM_CREDENTIALS_REJECTED"
    UPSTREAM_PROTOCOL_ERROR = "UPSTREAM_PROTOCOL_ERROR"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    CONTENT_FILTERED = "CONTENT_FILTERED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    CREDENTIALS_REQUIRED = "CREDENTIALS_REQUIRED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"
    URL_INVALID = "URL_INVALID"
    URL_SCHEME_NOT_ALLOWED = "URL_SCHEME_NOT_ALLOWED"
    URL_HOST_UNRESOLVABLE = "URL_HOST_UNRESOLVABLE"
    URL_DESTINATION_FORBIDDEN = "URL_DESTINATION_FORBIDDEN"
    URL_REDIRECT_NOT_FOLLOWED = "URL_REDIRECT_NOT_FOLLOWED"
    URL_RESPONSE_TOO_LARGE = "URL_RESPONSE_TOO_LARGE"
    URL_FETCH_TIMEOUT = "URL_FETCH_TIMEOUT"
    URL_FETCH_FAILED = "URL_FETCH_FAILED"
    ENCRYPTION_KEY_UNKNOWN = "ENCRYPTION_KEY_UNKNOWN"
    DECRYPTION_FAILED = "DECRYPTION_FAILED"
    OVERLOADED = "OVERLOADED"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    LIMITS_UNAVAILABLE = "LIMITS_UNAVAILABLE"
    RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
    EXTRA_NOT_INSTALLED = "EXTRA_NOT_INSTALLED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field: `field` is a dotted path such as `messages[0].parts`."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One exceeded quota: `subject` is what was limited, `description` which limit."""

    subject: str
    description: str


@dataclass(eq=False)
class GatewayError(Exception):
    """A failure with a status code, a stable reason and optional structured details.

    Args:
        message: human-readable description; must never contain secrets or message contents.
        code: canonical status code.
        reason: stable reason identifier.
        retryable: whether the same request may succeed if sent again.
        retry_after: seconds the caller should wait before retrying (becomes RetryInfo).
        metadata: extra ErrorInfo metadata (provider, model, upstream status, ...).
        field_violations: invalid fields (becomes BadRequest).
        quota_violations: exceeded quotas (becomes QuotaFailure).
    """

    message: str
    code: Code = Code.INTERNAL
    reason: Reason = Reason.INTERNAL
    retryable: bool = False
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    quota_violations: list[QuotaViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def invalid_argument(message: str, *violations: FieldViolation) -> GatewayError:
    """A caller error in the request itself (INVALID_ARGUMENT, reason INVALID_REQUEST)."""
    return GatewayError(
        message, Code.INVALID_ARGUMENT, Reason.INVALID_REQUEST, field_violations=list(violations)
    )


def invalid_field(field_path: str, description: str) -> GatewayError:
    """INVALID_ARGUMENT for a single bad field; the message repeats the field for plain clients."""
    return invalid_argument(f"{field_path}: {description}", FieldViolation(field_path, description))


def resource_not_found(kind: str, resource_id: str) -> GatewayError:
    """NOT_FOUND for a stored resource that does not exist OR belongs to another tenant (the two are
    indistinguishable on purpose). `kind` is e.g. "api key", "conversation"."""
    return GatewayError(
        f"{kind} {resource_id!r} not found",
        Code.NOT_FOUND,
        Reason.RESOURCE_NOT_FOUND,
        metadata={"resource_type": kind},
    )


def not_implemented(rpc: str) -> GatewayError:
    """UNIMPLEMENTED for an RPC that exists in the contract but is not served yet."""
    return GatewayError(f"{rpc} is not implemented yet", Code.UNIMPLEMENTED, Reason.NOT_IMPLEMENTED)


def upstream_interrupted(provider: str, detail: str) -> GatewayError:
    """UNAVAILABLE for a provider stream that ended without its terminator or broke mid-way."""
    return GatewayError(
        f"{provider} stream ended before completion: {detail}",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_STREAM_INTERRUPTED,
        retryable=True,
        metadata={"provider": provider},
    )
