"""Typed errors for Homa calls, decoded from gRPC statuses and their `google.rpc.Status` details.

Every failed call raises a `HomaError` subclass chosen by status code (`RateLimitError` for
RESOURCE_EXHAUSTED, ...). The gateway attaches exactly one `ErrorInfo` (domain `homa`) whose
`reason` is a stable UPPER_SNAKE identifier to branch on (see `docs/errors.md`), plus `RetryInfo`,
`BadRequest`, `QuotaFailure` and `RequestInfo` as they apply; all of them are decoded here.
Statuses that did not come from the gateway (connection refused, client-side deadline) have no
details: their `reason` is then the status code's name and `domain` is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "homa-request-id"
DOMAIN = "homa"

# Client-side reason for a stream that ended with status OK but without its `finish` event (the
# gateway's stream contract forbids this, so seeing it means a proxy or server bug).
INCOMPLETE_STREAM = "INCOMPLETE_STREAM"

# Reasons of RESOURCE_EXHAUSTED that waiting a little does not cure (the upstream billing quota).
_NOT_RETRYABLE_EXHAUSTION = frozenset({"UPSTREAM_QUOTA_EXHAUSTED"})

_CODES_BY_VALUE: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


class FieldViolation(NamedTuple):
    """One invalid request field (`BadRequest.FieldViolation`): a dotted path and why."""

    field: str
    description: str


class QuotaViolation(NamedTuple):
    """One exceeded quota (`QuotaFailure.Violation`): what was limited and which limit."""

    subject: str
    description: str


class HomaError(Exception):
    """A failed Homa call.

    Attributes:
        code: the gRPC status code.
        reason: `ErrorInfo.reason` (e.g. "UPSTREAM_RATE_LIMITED"); the code's name when the status
            carried no ErrorInfo (transport errors, client-side deadlines).
        message: the status message.
        domain: `ErrorInfo.domain` ("homa" for gateway errors, "" otherwise).
        retryable: whether sending the same request again may succeed.
        retry_after: seconds to wait before retrying (`RetryInfo`), or None.
        metadata: `ErrorInfo.metadata` (provider, model, ...).
        field_violations: invalid request fields (`BadRequest`).
        quota_violations: exceeded quotas (`QuotaFailure`).
        request_id: the gateway request id (`RequestInfo`, else the call's metadata), or "".
        status: the decoded `google.rpc.Status`, or None when the call carried none.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        domain: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        quota_violations: Iterable[QuotaViolation] = (),
        request_id: str = "",
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code.name
        self.domain = domain
        self.retryable = retryable
        self.retry_after = retry_after
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations)
        self.quota_violations: list[QuotaViolation] = list(quota_violations)
        self.request_id = request_id
        self.status = status

    @property
    def from_gateway(self) -> bool:
        """True when the gateway itself produced the error (it carried a homa ErrorInfo)."""
        return self.domain == DOMAIN

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class RequestCancelledError(HomaError):
    """CANCELLED: the call was cancelled (by the caller or the server shutting down)."""


class InvalidArgumentError(HomaError):
    """INVALID_ARGUMENT: the request is wrong; `field_violations` says where."""


class DeadlineExceededError(HomaError):
    """DEADLINE_EXCEEDED: the call ran out of time (client deadline or gateway budget)."""


class NotFoundError(HomaError):
    """NOT_FOUND: unknown model, provider or resource."""


class AlreadyExistsError(HomaError):
    """ALREADY_EXISTS: the resource to create exists already."""


class PermissionDeniedError(HomaError):
    """PERMISSION_DENIED: authenticated, but not allowed to do this."""


class RateLimitError(HomaError):
    """RESOURCE_EXHAUSTED: a rate limit, quota or budget was hit; see `retry_after`."""


class FailedPreconditionError(HomaError):
    """FAILED_PRECONDITION: the system is not in a state to run the call (e.g. capability missing)."""


class UnimplementedError(HomaError):
    """UNIMPLEMENTED: the RPC or feature is not served by this gateway."""


class InternalError(HomaError):
    """INTERNAL: a gateway fault (including an upstream rejecting the gateway's credentials)."""


class UnavailableError(HomaError):
    """UNAVAILABLE: the gateway or the upstream cannot serve now, or a stream was cut; retryable."""


class UnauthenticatedError(HomaError):
    """UNAUTHENTICATED: missing, invalid, expired or revoked credentials."""


class UnexpectedStatusError(HomaError):
    """Any status without a dedicated class (UNKNOWN, ABORTED, OUT_OF_RANGE, DATA_LOSS); see `code`."""


ERROR_CLASSES: Mapping[grpc.StatusCode, type[HomaError]] = {
    grpc.StatusCode.CANCELLED: RequestCancelledError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


def _retryable(code: grpc.StatusCode, reason: str, retry_after: float | None) -> bool:
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return retry_after is not None or reason not in _NOT_RETRYABLE_EXHAUSTION
    return False


def _unpack(detail: any_pb2.Any, fields: dict[str, Any]) -> None:
    """Fold one `Any` detail into `fields`; unknown detail types are ignored (forward compatible)."""
    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        if "reason" not in fields:  # the contract says exactly one; keep the first if not
            fields.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
    elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
        retry = error_details_pb2.RetryInfo()
        detail.Unpack(retry)
        fields["retry_after"] = retry.retry_delay.ToNanoseconds() / 1e9
    elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
        bad = error_details_pb2.BadRequest()
        detail.Unpack(bad)
        fields.setdefault("field_violations", []).extend(
            FieldViolation(v.field, v.description) for v in bad.field_violations
        )
    elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
        quota = error_details_pb2.QuotaFailure()
        detail.Unpack(quota)
        fields.setdefault("quota_violations", []).extend(
            QuotaViolation(v.subject, v.description) for v in quota.violations
        )
    elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
        info_r = error_details_pb2.RequestInfo()
        detail.Unpack(info_r)
        fields["request_id"] = info_r.request_id


def status_from_metadata(trailing: Iterable[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    """The `google.rpc.Status` carried in `grpc-status-details-bin`, or None (absent or corrupt)."""
    for key, value in trailing or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a corrupt detail must not hide the real status
                return None
    return None


def error_from_status(
    code: grpc.StatusCode,
    message: str,
    status: status_pb2.Status | None = None,
    request_id: str = "",
) -> HomaError:
    """Build the `HomaError` subclass for `code`, decoding `status` details when given.

    Args:
        code: the call's status code (authoritative over `status.code`).
        message: the call's status message.
        status: the rich status from the trailing metadata, if any.
        request_id: fallback request id when the details carry no `RequestInfo`.
    """
    fields: dict[str, Any] = {}
    for detail in status.details if status is not None else ():
        _unpack(detail, fields)
    reason = str(fields.pop("reason", "")) or code.name
    fields.setdefault("request_id", request_id)
    cls = ERROR_CLASSES.get(code, UnexpectedStatusError)
    return cls(
        message,
        code=code,
        reason=reason,
        retryable=_retryable(code, reason, fields.get("retry_after")),
        status=status,
        **fields,
    )


def _metadata_value(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str:
    for k, value in metadata or ():
        if k == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return ""


def rpc_error_metadata(exc: grpc.RpcError, which: str) -> list[tuple[str, str | bytes]]:
    """The "initial_metadata" or "trailing_metadata" of a failed call; empty when it has none."""
    getter = getattr(exc, which, None)
    if getter is None:
        return []
    try:
        return list(getter() or ())
    except Exception:  # some RpcError flavours have no metadata to give
        return []


def from_rpc_error(exc: grpc.RpcError, request_id: str = "") -> HomaError:
    """Convert a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) into a `HomaError`.

    Args:
        exc: the error raised by a gRPC stub; it must also be a `grpc.Call` (every stub error is)
            for its code, message and details to be read.
        request_id: the id the client sent, used when neither the details (`RequestInfo`) nor the
            initial metadata (`homa-request-id`) carry one.

    Returns:
        The subclass for the status code, with every known detail decoded. Corrupt or foreign
        details are ignored rather than raised.
    """
    code_getter = getattr(exc, "code", None)
    code = code_getter() if code_getter is not None else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = _CODES_BY_VALUE.get(int(code), grpc.StatusCode.UNKNOWN)
    details_getter = getattr(exc, "details", None)
    message = (details_getter() if details_getter is not None else None) or str(exc)
    status = status_from_metadata(rpc_error_metadata(exc, "trailing_metadata"))
    fallback_id = _metadata_value(rpc_error_metadata(exc, "initial_metadata"), REQUEST_ID_KEY) or request_id
    return error_from_status(code, message, status, fallback_id)
