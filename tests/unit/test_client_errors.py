"""Decoding gRPC statuses with google.rpc details into the HomaError family."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from homa_client import (
    FieldViolation,
    HomaError,
    InternalError,
    InvalidArgumentError,
    RateLimitError,
    RequestCancelledError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
    error_from_status,
    from_rpc_error,
)
from homa_client.errors import DETAILS_KEY, ERROR_CLASSES, QuotaViolation
from homa_server.errors import Code, GatewayError, Reason
from homa_server.errors import FieldViolation as ServerFieldViolation
from homa_server.errors import QuotaViolation as ServerQuotaViolation
from homa_server.rpc import status as server_status


class FakeRpcError(grpc.RpcError):
    """What a sync stub raises: an RpcError that is also a grpc.Call."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing: tuple[tuple[str, str | bytes], ...] = (),
        initial: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(details)
        self._code, self._details, self._trailing, self._initial = code, details, trailing, initial

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing

    def initial_metadata(self) -> Any:
        return self._initial


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(code: grpc.StatusCode, message: str, *details: Message) -> status_pb2.Status:
    return status_pb2.Status(code=code.value[0], message=message, details=[pack(d) for d in details])


def test_decodes_every_detail_kind() -> None:
    status = rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        error_details_pb2.ErrorInfo(
            reason="UPSTREAM_RATE_LIMITED", domain="homa", metadata={"provider": "openai"}
        ),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)),
        error_details_pb2.QuotaFailure(
            violations=[error_details_pb2.QuotaFailure.Violation(subject="key:abc", description="60 rpm")]
        ),
        error_details_pb2.RequestInfo(request_id="req-123"),
    )
    exc = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", ((DETAILS_KEY, status.SerializeToString()),)
    )

    error = from_rpc_error(exc)

    assert isinstance(error, RateLimitError)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "UPSTREAM_RATE_LIMITED"
    assert error.domain == "homa"
    assert error.from_gateway
    assert error.message == "slow down"
    assert error.retry_after == 2.5
    assert error.retryable
    assert error.metadata == {"provider": "openai"}
    assert error.quota_violations == [QuotaViolation("key:abc", "60 rpm")]
    assert error.request_id == "req-123"
    assert error.status == status
    assert str(error) == "UPSTREAM_RATE_LIMITED: slow down"


def test_field_violations_are_field_description_pairs() -> None:
    status = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad",
        error_details_pb2.ErrorInfo(reason="INVALID_REQUEST", domain="homa"),
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="messages[0].role", description="role must be set"
                ),
                error_details_pb2.BadRequest.FieldViolation(
                    field="temperature", description="must be between 0 and 2"
                ),
            ]
        ),
    )

    error = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad", status)

    assert isinstance(error, InvalidArgumentError)
    assert error.field_violations == [
        ("messages[0].role", "role must be set"),
        FieldViolation("temperature", "must be between 0 and 2"),
    ]
    assert not error.retryable


def test_round_trip_with_the_servers_status_builder() -> None:
    """What rpc/status.py sends is exactly what the client decodes."""
    gateway_error = GatewayError(
        "over budget",
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        metadata={"provider": "openai"},
        field_violations=[ServerFieldViolation("model", "unknown")],
        quota_violations=[ServerQuotaViolation("tenant:acme", "monthly budget")],
    )
    trailing = server_status.trailing_metadata(gateway_error, "rid-9")
    exc = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "over budget", trailing)

    error = from_rpc_error(exc)

    assert isinstance(error, RateLimitError)
    assert error.reason == "UPSTREAM_QUOTA_EXHAUSTED"
    assert error.retry_after is None
    assert not error.retryable  # a billing quota does not recover by waiting
    assert error.field_violations == [("model", "unknown")]
    assert error.quota_violations == [("tenant:acme", "monthly budget")]
    assert error.request_id == "rid-9"


def test_decodes_an_aio_rpc_error() -> None:
    status = rich_status(
        grpc.StatusCode.UNAVAILABLE,
        "cut",
        error_details_pb2.ErrorInfo(reason="UPSTREAM_STREAM_INTERRUPTED", domain="homa"),
    )
    exc = aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        initial_metadata=aio.Metadata(("homa-request-id", "from-initial")),
        trailing_metadata=aio.Metadata((DETAILS_KEY, status.SerializeToString())),
        details="cut",
        debug_error_string=None,
    )

    error = from_rpc_error(exc, request_id="sent-id")

    assert isinstance(error, UnavailableError)
    assert error.reason == "UPSTREAM_STREAM_INTERRUPTED"
    assert error.request_id == "from-initial"  # no RequestInfo: the gateway's metadata wins
    assert error.retryable


def test_transport_error_without_details_uses_the_code_name() -> None:
    exc = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")

    error = from_rpc_error(exc, request_id="sent-id")

    assert isinstance(error, UnavailableError)
    assert error.reason == "UNAVAILABLE"
    assert error.domain == ""
    assert not error.from_gateway
    assert error.request_id == "sent-id"
    assert error.status is None


def test_corrupt_details_do_not_hide_the_status() -> None:
    exc = FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "no key", ((DETAILS_KEY, b"\xff\xff not a status"),))

    error = from_rpc_error(exc)

    assert isinstance(error, UnauthenticatedError)
    assert error.reason == "UNAUTHENTICATED"


def test_unknown_detail_types_are_ignored() -> None:
    status = rich_status(
        grpc.StatusCode.INTERNAL,
        "boom",
        error_details_pb2.DebugInfo(detail="stack"),
        error_details_pb2.ErrorInfo(reason="UPSTREAM_CREDENTIALS_REJECTED", domain="homa"),
    )

    error = error_from_status(grpc.StatusCode.INTERNAL, "boom", status)

    assert isinstance(error, InternalError)
    assert error.reason == "UPSTREAM_CREDENTIALS_REJECTED"


@pytest.mark.parametrize("code", list(grpc.StatusCode))
def test_every_status_code_maps_to_a_homa_error(code: grpc.StatusCode) -> None:
    if code is grpc.StatusCode.OK:
        return
    error = error_from_status(code, "m")

    assert isinstance(error, HomaError)
    assert type(error) is ERROR_CLASSES.get(code, UnexpectedStatusError)
    assert error.code is code


def test_class_names_per_status() -> None:
    assert type(error_from_status(grpc.StatusCode.CANCELLED, "m")) is RequestCancelledError
    assert type(error_from_status(grpc.StatusCode.DATA_LOSS, "m")) is UnexpectedStatusError
    assert error_from_status(grpc.StatusCode.ABORTED, "m").retryable
    assert error_from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "m").retryable
    assert not error_from_status(grpc.StatusCode.PERMISSION_DENIED, "m").retryable


def test_errors_are_catchable_as_homa_error() -> None:
    with pytest.raises(HomaError) as caught:
        raise error_from_status(grpc.StatusCode.NOT_FOUND, "gone")

    assert "NotFoundError" in repr(caught.value)
