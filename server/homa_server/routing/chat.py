"""Chat dispatch: validate, resolve the model, call the provider, enforce time budgets and the stream
contract. Transport-neutral: the servicer passes the remaining deadline and gets homa messages back.

Stream contract enforced here, whatever the adapter does: the first event is `route`; exactly one
`finish` event ends a successful stream; an adapter stream that ends without `finish`, or yields
anything after it, is a failure (UPSTREAM_STREAM_INTERRUPTED / UPSTREAM_PROTOCOL_ERROR), never a
silent OK.

Allowed models: when the caller's Principal (published by the interceptor in the CallState) carries
`allowed_models`, a model outside it is refused with PERMISSION_DENIED (generic message) before the
provider is called; the requested name, the resolved model or `provider/model` may be listed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import usage_pb2
from homa_server.auth.principal import permission_denied
from homa_server.errors import Code, GatewayError, Reason, upstream_interrupted
from homa_server.observability.call_state import add_upstream_time, current_call, set_trailer
from homa_server.providers.base import CallContext, ChatProvider
from homa_server.routing.resolver import ModelResolver, Target
from homa_server.validation.chat import validate_chat_request


def _deadline_error(what: str) -> GatewayError:
    return GatewayError(f"{what} exceeded", Code.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, retryable=True)


def _budget(request: chat_pb2.CompleteRequest, remaining: float | None) -> float | None:
    """Seconds allowed for the call: the gRPC deadline, shortened by `options.timeout` when set."""
    if request.options.HasField("timeout"):
        own = request.options.timeout.ToTimedelta().total_seconds()
        if own > 0:
            return own if remaining is None else min(own, remaining)
    return remaining


class ChatDispatcher:
    """Runs chat calls against the provider chosen by the resolver."""

    def __init__(self, resolver: ModelResolver) -> None:
        self._resolver = resolver
        # isinstance() against a runtime-checkable Protocol inspects every member: decide once.
        self._chat_capable: dict[str, bool] = {}

    def _target(self, request: chat_pb2.CompleteRequest) -> tuple[Target, ChatProvider]:
        validate_chat_request(request)
        target = self._resolver.resolve(request.model)
        provider = target.provider
        state = current_call.get()
        principal = state.principal if state is not None else None
        if principal is not None and principal.allowed_models is not None:
            allowed = principal.allowed_models
            if not (
                request.model in allowed
                or target.model in allowed
                or f"{provider.name}/{target.model}" in allowed
            ):
                raise permission_denied()
        capable = self._chat_capable.get(provider.name)
        if capable is None:
            capable = self._chat_capable[provider.name] = isinstance(provider, ChatProvider)
        if not capable:
            raise GatewayError(
                f"provider {provider.name!r} does not offer chat",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": provider.name},
            )
        set_trailer("homa-provider", provider.name)
        set_trailer("homa-model", target.model)
        set_trailer("homa-attempts", "1")
        return target, cast(ChatProvider, provider)

    @staticmethod
    def _context(
        request: chat_pb2.CompleteRequest, target: Target, remaining: float | None, request_id: str
    ) -> CallContext:
        budget = _budget(request, remaining)
        first = None
        if request.options.HasField("first_token_timeout"):
            first = request.options.first_token_timeout.ToTimedelta().total_seconds() or None
        return CallContext(
            model=target.model,
            deadline=None if budget is None else time.monotonic() + budget,
            request_id=request_id,
            first_token_timeout=first,
        )

    async def complete(
        self, request: chat_pb2.CompleteRequest, remaining: float | None, request_id: str = ""
    ) -> chat_pb2.CompleteResponse:
        """One whole completion.

        Args:
            request: the chat request.
            remaining: seconds left before the caller's deadline, or None.
            request_id: gateway request id, forwarded to the provider.

        Raises:
            GatewayError: validation, routing, provider or deadline failures.
        """
        target, provider = self._target(request)
        ctx = self._context(request, target, remaining, request_id)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(ctx.remaining()):
                response = await provider.complete_chat(request, ctx)
        except TimeoutError:
            raise _deadline_error("deadline") from None
        finally:
            add_upstream_time(time.perf_counter() - started)
        response.route.CopyFrom(usage_pb2.Route(provider=provider.name, model=target.model, attempt=1))
        return response

    async def stream(
        self, request: chat_pb2.CompleteRequest, remaining: float | None, request_id: str = ""
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """A streamed completion; see the module docstring for the contract.

        Closing this generator (client cancel, deadline) closes the provider stream, and with it the
        upstream HTTP response, before returning.
        """
        target, provider = self._target(request)
        ctx = self._context(request, target, remaining, request_id)
        yield chat_pb2.StreamCompleteResponse(
            route=usage_pb2.Route(provider=provider.name, model=target.model, attempt=1)
        )
        finished = False
        first = True
        async with aclosing(provider.stream_chat(request, ctx)) as events:
            while True:
                limit = ctx.remaining()
                if first and ctx.first_token_timeout is not None:
                    limit = ctx.first_token_timeout if limit is None else min(limit, ctx.first_token_timeout)
                started = time.perf_counter()
                try:
                    if limit is None:
                        event = await anext(events)
                    else:
                        async with asyncio.timeout(limit):
                            event = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise _deadline_error("time to first token" if first else "deadline") from None
                finally:
                    add_upstream_time(time.perf_counter() - started)
                first = False
                if finished:
                    raise GatewayError(
                        f"{provider.name} sent events after finish",
                        Code.UNAVAILABLE,
                        Reason.UPSTREAM_PROTOCOL_ERROR,
                        retryable=True,
                        metadata={"provider": provider.name},
                    )
                finished = event.HasField("finish")
                yield event
        if not finished:
            raise upstream_interrupted(provider.name, "no finish event")
