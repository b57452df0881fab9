"""Unary calls with request ids, deadlines, `CallInfo` recording and error conversion.

The `timeout` of a call becomes its gRPC deadline, which the gateway turns into its upstream
budget; an `asyncio.timeout` around the call would only stop waiting locally.

With a `token_provider`, a call the gateway answers UNAUTHENTICATED / INVALID_CREDENTIALS (e.g.
a token revoked or expired early) is sent once more with a freshly fetched token; streams never are.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from grpc import aio

from homa_client.errors import HomaError, from_rpc_error
from homa_client.invocation import CallOptions, CallSettings, PreparedCall
from homa_client.results import CallInfo

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

INVALID_CREDENTIALS = "INVALID_CREDENTIALS"


def _token_rejected(settings: CallSettings, prepared: PreparedCall, error: HomaError) -> bool:
    """Whether the gateway rejected the call's provider token; if so the token is dropped from the cache."""
    if settings.token_provider is None or prepared.token is None:
        return False
    if error.code is not grpc.StatusCode.UNAUTHENTICATED or error.reason != INVALID_CREDENTIALS:
        return False
    settings.token_provider.invalidate(prepared.token)
    return True


def _same_id(options: CallOptions, prepared: PreparedCall) -> CallOptions:
    """`options` pinned to the request id already used (the retry is the same logical call)."""
    return CallOptions(options.timeout, prepared.request_id, options.metadata)


async def call_async(
    settings: CallSettings, method: aio.UnaryUnaryMultiCallable[Req, Resp], request: Req, options: CallOptions
) -> Resp:
    """Run one unary call on an async stub method.

    Raises:
        HomaError: the call failed (its `CallInfo` is recorded first).
    """
    prepared = await settings.prepare_async(options)
    for attempt in (1, 2):
        call = method(request, timeout=prepared.timeout, metadata=prepared.metadata)
        try:
            response = await call
            break
        except grpc.RpcError as exc:
            settings.record_error(exc, prepared.request_id)
            error = from_rpc_error(exc, prepared.request_id)
            if _token_rejected(settings, prepared, error) and attempt == 1:
                prepared = await settings.authorize_async(settings.prepare(_same_id(options, prepared)))
                continue
            raise error from exc
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
    prepared = settings.prepare_sync(options)
    for attempt in (1, 2):
        try:
            response, call = method.with_call(request, timeout=prepared.timeout, metadata=prepared.metadata)
            break
        except grpc.RpcError as exc:
            settings.record_error(exc, prepared.request_id)
            error = from_rpc_error(exc, prepared.request_id)
            if _token_rejected(settings, prepared, error) and attempt == 1:
                prepared = settings.prepare_sync(_same_id(options, prepared))
                continue
            raise error from exc
    initial, trailing = call.initial_metadata(), call.trailing_metadata()
    settings.record(CallInfo.from_metadata(prepared.request_id, call.code(), initial, trailing))
    return response
