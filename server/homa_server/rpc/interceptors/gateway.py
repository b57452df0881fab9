"""The server interceptor every RPC passes through: request id, authentication, timing, error backstop.

One interceptor wraps the handler of each method, keeping its streaming kind (unary/stream in and
out), so that the four concerns cost a single wrapper per call:
- request id: `x-request-id` in, `homa-request-id` out: in the trailing metadata of unary-response
  RPCs (no extra send before the answer) and in the initial metadata of streaming-response RPCs
  (the caller knows it before the first message);
- authentication and authorisation (auth/authenticator.py): before the behaviour is called (so
  before any request message is read), the `authorization` metadata is validated (or, in mode
  `mtls`, the verified client certificate from `context.auth_context()`) and the method's
  required scope checked; the Principal is published in `CallState.principal`. A rejection goes
  through the error backstop like any `GatewayError`, so it keeps the method's streaming kind.
  The required scope is looked up once per method (the wrapped handler is cached); in mode `none`
  the anonymous Principal is assigned with no check. Open methods (health, reflection) read no
  credential and carry no Principal;
- timing: `homa-overhead-ms` trailing metadata = wall time minus time spent waiting on providers;
- error backstop: a `GatewayError` becomes its status with details (rpc/status.py); any other
  exception becomes INTERNAL with reason INTERNAL and is logged with its stack, never leaked;
- access audit: with a recorder, each Homa RPC yields one audit record when it ends
  (rpc/interceptors/access_audit.py), built only then and appended without blocking.
Cancellation (`asyncio.CancelledError`) is always re-raised untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from homa_server.auth.authenticator import Authenticator
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState, current_call
from homa_server.rpc import status
from homa_server.rpc.interceptors.access_audit import CANCELLED, AccessAuditor
from homa_server.rpc.interceptors.request_id import OUTBOUND_KEY, request_id_from
from homa_server.store.records import Recorder

log = logging.getLogger("homa.rpc")

OVERHEAD_KEY = "homa-overhead-ms"

Behavior = Callable[..., Any]

AUTHORIZATION_KEY = "authorization"


class _Guard:
    """The authentication step of one method: its required scope, looked up once."""

    __slots__ = ("authenticator", "scope")

    def __init__(self, authenticator: Authenticator, scope: str) -> None:
        self.authenticator = authenticator
        self.scope = scope

    async def check(self, metadata: Any, context: aio.ServicerContext[Any, Any], state: CallState) -> None:
        """Identify the caller, publish it in `state` (so that a denial is audited with its actor),
        then check the method's scope."""
        authorization: str | None = None
        for key, value in metadata or ():
            if key == AUTHORIZATION_KEY:
                if authorization is not None or not isinstance(value, str):
                    authorization = "\x00"  # two headers, or a binary one: never a valid credential
                    break
                authorization = value
        # The TLS auth context is read only when mode mtls needs it (a call without a token).
        state.principal = await self.authenticator.identify(authorization, context.auth_context)
        self.authenticator.authorize(state.principal, self.scope)


def _internal(exc: BaseException) -> GatewayError:
    return GatewayError(
        "internal error", Code.INTERNAL, Reason.INTERNAL, metadata={"type": type(exc).__name__}
    )


class _Call:
    """Start/finish logic shared by the four wrappers."""

    __slots__ = ("auditor", "context", "metadata", "state", "streaming")

    def __init__(
        self,
        method: str,
        metadata: Any,
        context: aio.ServicerContext[Any, Any],
        streaming: bool,
        principal: Principal | None,
        *,
        auditor: AccessAuditor | None = None,
    ) -> None:
        self.context = context
        self.streaming = streaming
        self.metadata = metadata
        self.auditor = auditor
        self.state = CallState(request_id=request_id_from(metadata), method=method, principal=principal)
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

    def audit(self, error: GatewayError | None) -> None:
        """Record the end of the call (a no-op without an auditor); never raises."""
        if self.auditor is not None:
            try:
                authenticating = self.state.principal is None
                self.auditor.finished(self.state, error, authenticating, self.metadata, self.context.peer())
            except Exception:
                log.exception("access audit failed", extra={"request_id": self.state.request_id})

    def succeed(self) -> None:
        self.context.set_trailing_metadata(tuple(self._trailers()))
        self.audit(None)

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
        self.audit(error)
        trailers = (*status.trailing_metadata(error, self.state.request_id), *self._trailers())
        await self.context.abort(status.grpc_code(error), error.message, trailers)


def _wrap_unary_unary(
    method: str,
    behavior: Behavior,
    guard: _Guard | None,
    principal: Principal | None,
    auditor: AccessAuditor | None = None,
) -> Behavior:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        metadata = context.invocation_metadata()
        call = _Call(method, metadata, context, False, principal, auditor=auditor)
        try:
            if guard is not None:
                await guard.check(metadata, context, call.state)
            response = await behavior(request, context)
            call.succeed()
            return response
        except asyncio.CancelledError:
            call.audit(CANCELLED)
            raise
        except Exception as exc:
            if isinstance(exc, aio.AbortError):
                call.audit(_internal(exc))
                raise
            await call.fail(exc)

    return handler


def _wrap_stream_unary(
    method: str,
    behavior: Behavior,
    guard: _Guard | None,
    principal: Principal | None,
    auditor: AccessAuditor | None = None,
) -> Behavior:
    return _wrap_unary_unary(method, behavior, guard, principal, auditor)


def _wrap_unary_stream(
    method: str,
    behavior: Behavior,
    guard: _Guard | None,
    principal: Principal | None,
    auditor: AccessAuditor | None = None,
) -> Behavior:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        metadata = context.invocation_metadata()
        call = _Call(method, metadata, context, True, principal, auditor=auditor)
        try:
            if guard is not None:
                await guard.check(metadata, context, call.state)
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
        except asyncio.CancelledError:
            call.audit(CANCELLED)
            raise
        except Exception as exc:
            if isinstance(exc, aio.AbortError):
                call.audit(_internal(exc))
                raise
            await call.fail(exc)

    return handler


def _wrap_stream_stream(
    method: str,
    behavior: Behavior,
    guard: _Guard | None,
    principal: Principal | None,
    auditor: AccessAuditor | None = None,
) -> Behavior:
    return _wrap_unary_stream(method, behavior, guard, principal, auditor)


if TYPE_CHECKING:
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:  # grpc's runtime class is not generic; the stubs' is.
    _Interceptor = aio.ServerInterceptor


class GatewayInterceptor(_Interceptor):
    """Wraps every method handler; see the module docstring.

    Args:
        authenticator: the configured methods; None leaves every call without a Principal (tests of
            the interceptor alone).
        recorder: where access audit records go; None records nothing.
        record_access: record every Homa RPC (else only denied calls and failed authentications).
    """

    def __init__(
        self,
        authenticator: Authenticator | None = None,
        recorder: Recorder | None = None,
        record_access: bool = True,
    ) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._authenticator = authenticator
        self._auditor = AccessAuditor(recorder, record_access) if recorder is not None else None

    def _auditor_for(self, method: str) -> AccessAuditor | None:
        auth = self._authenticator
        if auth is not None and auth.policy.is_open(method):
            return None
        return self._auditor

    def _guard(self, method: str) -> tuple[_Guard | None, Principal | None]:
        auth = self._authenticator
        if auth is None or auth.policy.is_open(method):
            return None, None
        if auth.open_to_all:
            return None, auth.anonymous
        return _Guard(auth, auth.policy.required_scope(method)), None

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
        wrapped = _wrap(method, handler, *self._guard(method), self._auditor_for(method))
        self._cache[method] = wrapped
        return wrapped


def _wrap(
    method: str,
    handler: grpc.RpcMethodHandler[Any, Any],
    guard: _Guard | None,
    principal: Principal | None,
    auditor: AccessAuditor | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_unary(method, handler.unary_unary, guard, principal, auditor),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_unary_stream(method, handler.unary_stream, guard, principal, auditor),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_stream_unary(method, handler.stream_unary, guard, principal, auditor),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_stream(method, handler.stream_stream, guard, principal, auditor),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
