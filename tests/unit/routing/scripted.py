"""A chat provider whose every call follows a script (for routing tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import CallContext
from homa_server.settings import ProviderSettings


@dataclass
class Step:
    """One call's behaviour: wait `delay_s`, then raise `error` or answer `text`."""

    error: GatewayError | None = None
    delay_s: float = 0.0
    text: str = "ok"


def unavailable() -> GatewayError:
    return GatewayError("503 from upstream", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, retryable=True)


def rate_limited(retry_after: float | None = None) -> GatewayError:
    return GatewayError(
        "429 from upstream",
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        retryable=True,
        retry_after=retry_after,
    )


@dataclass
class ScriptedProvider:
    """Calls consume `script` per model (`default` once a model's script is used up)."""

    name: str
    script: dict[str, list[Step]] = field(default_factory=dict)
    default: Step = field(default_factory=Step)
    calls: list[tuple[str, float]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "mock"

    async def aclose(self) -> None:
        return None

    def _next(self, ctx: CallContext) -> Step:
        self.calls.append((ctx.model, asyncio.get_running_loop().time()))
        steps = self.script.get(ctx.model, [])
        return steps.pop(0) if steps else self.default

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        step = self._next(ctx)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            raise step.error
        message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
        message.parts.add(text=f"{self.name}/{ctx.model}: {step.text}")
        return chat_pb2.CompleteResponse(message=message, finish_reason=usage_pb2.FINISH_REASON_STOP)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        step = self._next(ctx)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            raise step.error
        yield chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=f"{self.name}/{ctx.model}: "))
        yield chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=step.text))
        yield chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish(reason=usage_pb2.FINISH_REASON_STOP))


def scripted_factory(name: str, settings: ProviderSettings) -> ScriptedProvider:
    """Registry factory (kind `scripted`); tests reach the instance through the registry."""
    return ScriptedProvider(name)
