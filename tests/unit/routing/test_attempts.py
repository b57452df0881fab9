"""The attempt loop against scripted providers: fallback, retry, Retry-After, breaker, deadlines."""

from __future__ import annotations

import random
import time
from contextlib import aclosing
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.attempts import Router
from homa_server.routing.breaker import CircuitState
from homa_server.routing.resolver import ModelResolver
from homa_server.routing.routes import RouteTable
from homa_server.settings import ProviderSettings, ResilienceSettings, RouteSettings
from tests.unit.routing.scripted import ScriptedProvider, Step, rate_limited, unavailable

INVALID = GatewayError("400 from upstream", Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST)


class Env:
    """Two scripted providers `a` and `b`, route `r` = [a/m, b/m], a fake sleep and a shiftable clock."""

    def __init__(self, resilience: dict[str, Any] | None = None, route: dict[str, Any] | None = None) -> None:
        self.a, self.b = ScriptedProvider("a"), ScriptedProvider("b")
        registry = ProviderRegistry(
            {"a": self.a, "b": self.b},
            {"a": ProviderSettings(kind="mock"), "b": ProviderSettings(kind="mock")},
        )
        spec = {
            "deployments": [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m"}],
            **(route or {}),
        }
        table = RouteTable(
            {"r": RouteSettings.model_validate(spec)}, registry, ModelResolver(registry, "a/m")
        )
        self.slept: list[float] = []
        self.offset = 0.0
        self.router = Router(
            table,
            ResilienceSettings.model_validate(resilience or {}),
            rng=random.Random(5),
            sleep=self._sleep,
            clock=lambda: time.monotonic() + self.offset,
        )

    async def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def complete(self, model: str = "r", remaining: float | None = None) -> tuple[str, int]:
        request = chat_pb2.CompleteRequest(model=model)
        request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
        plan = self.router.plan(request, remaining)
        response, attempt = await self.router.complete(plan, request, "rid")
        assert attempt.route().attempt == attempt.number
        return response.message.parts[0].text, attempt.number


async def test_falls_back_after_a_5xx() -> None:
    env = Env()
    env.a.script["m"] = [Step(unavailable())]
    assert await env.complete() == ("b/m: ok", 2)
    assert env.slept == []


async def test_non_retryable_error_ends_the_call_without_fallback() -> None:
    env = Env()
    env.a.script["m"] = [Step(INVALID)]
    with pytest.raises(GatewayError) as info:
        await env.complete()
    assert info.value is INVALID
    assert env.b.calls == []


async def test_retries_the_same_deployment_with_jittered_backoff() -> None:
    env = Env({"retry": {"max_attempts": 3, "base_delay_s": 0.1}})
    env.a.script["m"] = [Step(unavailable()), Step(unavailable())]
    assert await env.complete() == ("a/m: ok", 3)
    assert len(env.slept) == 2
    assert 0 <= env.slept[0] <= 0.1
    assert 0 <= env.slept[1] <= 0.2


async def test_route_overrides_attempts_per_deployment() -> None:
    env = Env({"retry": {"max_attempts": 1}}, {"max_attempts_per_deployment": 2})
    env.a.script["m"] = [Step(unavailable())]
    assert await env.complete() == ("a/m: ok", 2)


async def test_retry_after_is_honoured_when_short() -> None:
    env = Env({"retry": {"max_attempts": 2, "base_delay_s": 0.001, "max_retry_after_s": 1.0}})
    env.a.script["m"] = [Step(rate_limited(0.4))]
    assert await env.complete() == ("a/m: ok", 2)
    assert env.slept == [pytest.approx(0.4)]


async def test_long_retry_after_falls_back_at_once() -> None:
    env = Env({"retry": {"max_attempts": 2, "max_retry_after_s": 0.5}})
    env.a.script["m"] = [Step(rate_limited(5.0))]
    assert await env.complete() == ("b/m: ok", 2)
    assert env.slept == []


async def test_all_failing_gives_one_error_listing_every_attempt() -> None:
    env = Env()
    env.a.script["m"] = [Step(unavailable())]
    env.b.script["m"] = [Step(rate_limited(3.0))]
    with pytest.raises(GatewayError) as info:
        await env.complete()
    error = info.value
    assert error.code is Code.RESOURCE_EXHAUSTED  # the last failure's status
    assert error.reason is Reason.UPSTREAM_RATE_LIMITED
    assert error.retry_after == 3.0
    assert error.metadata["attempts"] == "2"
    assert error.metadata["attempt_1"] == "a/m UPSTREAM_UNAVAILABLE"
    assert error.metadata["attempt_2"] == "b/m UPSTREAM_RATE_LIMITED"
    assert "a/m: UPSTREAM_UNAVAILABLE" in error.message
    assert "b/m: UPSTREAM_RATE_LIMITED" in error.message


async def test_a_single_failure_is_raised_unchanged() -> None:
    env = Env()
    failure = unavailable()
    env.a.script["m"] = [Step(failure)]
    with pytest.raises(GatewayError) as info:
        await env.complete("a/m")
    assert info.value is failure


async def test_total_attempts_are_bounded() -> None:
    env = Env({"retry": {"max_attempts": 5, "max_total_attempts": 3}})
    env.a.default = env.b.default = Step(unavailable())
    with pytest.raises(GatewayError) as info:
        await env.complete()
    assert info.value.metadata["attempts"] == "3"
    assert len(env.a.calls) + len(env.b.calls) == 3


async def test_breaker_opens_skips_the_deployment_then_recovers_half_open() -> None:
    env = Env({"breaker": {"consecutive_failures": 2, "cooldown_s": 30}})
    env.a.script["m"] = [Step(unavailable()), Step(unavailable())]
    assert await env.complete() == ("b/m: ok", 2)
    assert await env.complete() == ("b/m: ok", 2)
    assert env.router.breakers.get("a/m").state is CircuitState.OPEN
    assert await env.complete() == ("b/m: ok", 1)  # a/m skipped: not an attempt
    assert len(env.a.calls) == 2
    env.offset += 30  # cool-down over: one probe goes to a/m, which has recovered
    assert env.router.breakers.get("a/m").state is CircuitState.HALF_OPEN
    assert await env.complete() == ("a/m: ok", 1)
    assert env.router.breakers.get("a/m").state is CircuitState.CLOSED
    last = env.router.breakers.get("a/m").last_error
    assert last is not None
    assert last.reason == "UPSTREAM_UNAVAILABLE"


async def test_open_circuit_of_the_only_candidate_is_unavailable_with_retry_info() -> None:
    env = Env({"breaker": {"consecutive_failures": 1, "cooldown_s": 30}})
    env.a.script["m"] = [Step(unavailable())]
    with pytest.raises(GatewayError):
        await env.complete("a/m")
    with pytest.raises(GatewayError) as info:
        await env.complete("a/m")
    assert info.value.code is Code.UNAVAILABLE
    assert info.value.reason is Reason.CIRCUIT_OPEN
    assert info.value.retry_after is not None
    assert 29 < info.value.retry_after <= 30


async def test_deadline_stops_the_loop() -> None:
    env = Env()
    env.a.script["m"] = [Step(unavailable(), delay_s=0.05)]
    env.b.default = Step(delay_s=5)  # still busy when the deadline passes
    started = time.monotonic()
    with pytest.raises(GatewayError) as info:
        await env.complete(remaining=0.2)
    assert time.monotonic() - started < 1.0
    assert info.value.code is Code.DEADLINE_EXCEEDED
    assert info.value.reason is Reason.DEADLINE_EXCEEDED
    assert info.value.metadata["attempt_1"] == "a/m UPSTREAM_UNAVAILABLE"


async def _open(env: Env, request: chat_pb2.CompleteRequest) -> tuple[list[str], int]:
    plan = env.router.plan(request, None)
    opened = await env.router.open_stream(plan, request, "rid")
    texts = [opened.first.delta.text]
    async with aclosing(opened.events) as events:
        async for event in events:
            texts.append(event.delta.text)
    opened.lease.close(None)
    return texts, opened.lease.attempt.number


async def test_stream_falls_back_on_first_token_timeout() -> None:
    env = Env(route={"first_token_timeout_s": 0.05})
    env.a.script["m"] = [Step(delay_s=5)]
    request = chat_pb2.CompleteRequest(model="r")
    started = time.monotonic()
    texts, attempt = await _open(env, request)
    assert time.monotonic() - started < 1.0
    assert texts[0] == "b/m: "
    assert attempt == 2


async def test_stream_falls_back_on_an_error_before_the_first_event() -> None:
    env = Env()
    env.a.script["m"] = [Step(rate_limited())]
    texts, attempt = await _open(env, chat_pb2.CompleteRequest(model="r"))
    assert texts == ["b/m: ", "ok", ""]
    assert attempt == 2
    assert env.router.balancer.stats("b/m").inflight == 0
