"""Unary calls with request ids, deadlines, `CallInfo` recording and error conversion.

The `timeout` of a call becomes its gRPC deadline, which the gateway turns into its upstream
budget; an `asyncio.timeout` around the call would only stop waiting locally.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from grpc import aio

from homa_client.errors import from_rpc_error
from homa_client.invocation import CallOptions, CallSettings
from homa_client.results import CallInfo

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


async def call_async(
    settings: CallSettings, method: aio.UnaryUnaryMultiCallable[Req, Resp], request: Req, options: CallOptions
) -> Resp:
    """Run one unary call on an async stub method.

    Raises:
        HomaError: the call failed (its `CallInfo` is recorded first).
    """
    prepared = settings.prepare(options)
    call = method(request, timeout=prepared.timeout, metadata=prepared.metadata)
    try:
        response = await call
    except grpc.RpcError as exc:
        settings.record_error(exc, prepared.request_id)
        raise from_rpc_error(exc, prepared.request_id) from exc
    initial, trailing = await call.initial_metadata(), await call.trailing_metadata()
    settings.record(CallInfo.from_metadata(prepared.request_id, await call.code(), initial, trailing))
    return response


def call_sync(
    settings: CallSettings,
    method: grpc.UnaryUnaryMultiCallable[Req, Resp],
    request: Req,
    options: CallOptions,
) -> Resp:
    """Run one unary call on a sync stub method; see `call_async`."""
    prepared = settings.prepare(options)
    try:
        response, call = method.with_call(request, timeout=prepared.timeout, metadata=prepared.metadata)
    except grpc.RpcError as exc:
        settings.record_error(exc, prepared.request_id)
        raise from_rpc_error(exc, prepared.request_id) from exc
    initial, trailing = call.initial_metadata(), call.trailing_metadata()
    settings.record(CallInfo.from_metadata(prepared.request_id, call.code(), initial, trailing))
    return response
