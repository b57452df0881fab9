"""GatewayError -> gRPC status with google.rpc.Status details. The only place that builds them.

Every error status carries exactly one `ErrorInfo` (domain `homa`, UPPER_SNAKE reason), plus
`RetryInfo` when a retry delay is known, `BadRequest` for field violations, `QuotaFailure` for
exceeded quotas and `RequestInfo` with the gateway request id.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from homa_server.errors import GatewayError

DOMAIN = "homa"
DETAILS_KEY = "grpc-status-details-bin"

_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def grpc_code(error: GatewayError) -> grpc.StatusCode:
    """The grpc.StatusCode for an error's canonical code."""
    return _CODES[int(error.code)]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status_proto(error: GatewayError, request_id: str = "") -> status_pb2.Status:
    """Build the google.rpc.Status for `error`."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=str(error.reason), domain=DOMAIN, metadata=dict(error.metadata)
            )
        )
    ]
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(0.0, error.retry_after) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if error.field_violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.field_violations
                    ]
                )
            )
        )
    if error.quota_violations:
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
                        for v in error.quota_violations
                    ]
                )
            )
        )
    if request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    return status_pb2.Status(code=int(error.code), message=error.message, details=details)


def trailing_metadata(error: GatewayError, request_id: str = "") -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata carrying the serialised status details."""
    return ((DETAILS_KEY, to_status_proto(error, request_id).SerializeToString()),)
