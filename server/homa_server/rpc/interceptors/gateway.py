"""The server interceptor every RPC passes through: request id, timing and the error backstop.

One interceptor wraps the handler of each method, keeping its streaming kind (unary/stream in and
out), so that the three concerns cost a single wrapper per call:
- request id: `x-request-id` in, `homa-request-id` out: in the trailing metadata of unary-response
  RPCs (no extra send before the answer) and in the initial metadata of streaming-response RPCs
  (the caller knows it before the first message);
- timing: `homa-overhead-ms` trailing metadata = wall time minus time spent waiting on providers;
- error backstop: a `GatewayError` becomes its status with details (rpc/status.py); any other
  exception becomes INTERNAL with reason INTERNAL and is logged with its stack, never leaked.
Cancellation (`asyncio.CancelledError`) is always re-raised untouched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState, current_call
from homa_server.rpc import status
from homa_server.rpc.interceptors.request_id import OUTBOUND_KEY, request_id_from

log = logging.getLogger("homa.rpc")

OVERHEAD_KEY = "homa-overhead-ms"

Behavior = Callable[..., Any]


def _internal(exc: BaseException) -> GatewayError:
    return GatewayError(
        "internal error", Code.INTERNAL, Reason.INTERNAL, metadata={"type": type(exc).__name__}
    )


class _Call:
    """Start/finish logic shared by the four wrappers."""

    __slots__ = ("context", "state", "streaming")

    def __init__(
        self, method: str, metadata: Any, context: aio.ServicerContext[Any, Any], streaming: bool
    ) -> None:
        self.context = context
        self.streaming = streaming
        self.state = CallState(request_id=request_id_from(metadata), method=method)
        # Each RPC runs in its own task (its own context copy), so the variable is never reset:
        # a stream closed from another task could not reset it anyway.
        current_call.set(self.state)

    async def start(self) -> None:
        if self.streaming:
            await self.context.send_initial_metadata(((OUTBOUND_KEY, self.state.request_id),))

    def _trailers(self) -> list[tuple[str, str]]:
        pairs = list(self.state.trailers.items())
        pairs.append((OVERHEAD_KEY, f"{self.state.overhead_ms():.3f}"))
        if not self.streaming:
            pairs.append((OUTBOUND_KEY, self.state.request_id))
        return pairs

    def succeed(self) -> None:
        self.context.set_trailing_metadata(tuple(self._trailers()))

    async def fail(self, exc: Exception) -> None:
        if isinstance(exc, GatewayError):
            error = exc
            log.info(
                "rpc failed",
                extra={
                    "method": self.state.method,
                    "request_id": self.state.request_id,
                    "reason": str(error.reason),
                },
            )
        else:
            error = _internal(exc)
            log.exception(
                "unhandled error", extra={"method": self.state.method, "request_id": self.state.request_id}
            )
        trailers = (*status.trailing_metadata(error, self.state.request_id), *self._trailers())
        await self.context.abort(status.grpc_code(error), error.message, trailers)


def _wrap_unary_unary(method: str, behavior: Behavior) -> Behavior:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(method, context.invocation_metadata(), context, streaming=False)
        try:
            response = await behavior(request, context)
            call.succeed()
            return response
        except Exception as exc:
            if isinstance(exc, aio.AbortError):
                raise
            await call.fail(exc)

    return handler


def _wrap_stream_unary(method: str, behavior: Behavior) -> Behavior:
    return _wrap_unary_unary(method, behavior)


def _wrap_unary_stream(method: str, behavior: Behavior) -> Behavior:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _Call(method, context.invocation_metadata(), context, streaming=True)
        try:
            await call.start()
            stream = behavior(request, context)
            if hasattr(stream, "__aiter__"):
                try:
                    async for item in stream:
                        yield item
                finally:
                    await stream.aclose()
            else:
                # A handler written with context.write() (e.g. grpc's own health Watch) is a coroutine.
                await stream
            call.succeed()
        except Exception as exc:
            if isinstance(exc, aio.AbortError):
                raise
            await call.fail(exc)

    return handler


def _wrap_stream_stream(method: str, behavior: Behavior) -> Behavior:
    return _wrap_unary_stream(method, behavior)


if TYPE_CHECKING:
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:  # grpc's runtime class is not generic; the stubs' is.
    _Interceptor = aio.ServerInterceptor


class GatewayInterceptor(_Interceptor):
    """Wraps every method handler; see the module docstring."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = _wrap(method, handler)
        self._cache[method] = wrapped
        return wrapped


def _wrap(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_unary(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_unary_stream(method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_stream_unary(method, handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_stream(method, handler.stream_stream),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
