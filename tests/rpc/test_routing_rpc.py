"""Routing and resilience through the real server: aliases, fallback, retries, Retry-After, breaker,
deadlines, priority shedding, and what the route event / trailers / ListProviders report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway, start, stop
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.store.records import MemoryRecorder
from tests.conftest import make_settings, status_details
from tests.unit.routing.scripted import ScriptedProvider, Step, rate_limited, scripted_factory, unavailable

PROVIDERS = {"mock": {"kind": "mock"}, "mock2": {"kind": "mock"}, "s": {"kind": "scripted"}}


class Env:
    def __init__(self, gateway: Gateway, channel: aio.Channel) -> None:
        self.gateway = gateway
        self.chat = chat_grpc.ChatServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)

    @property
    def scripted(self) -> ScriptedProvider:
        provider = self.gateway.registry.get("s")
        assert isinstance(provider, ScriptedProvider)
        return provider


@asynccontextmanager
async def serve(routes: dict[str, Any] | None = None, **overrides: Any) -> AsyncIterator[Env]:
    # Routing tests repeat identical requests to reach providers again: no response cache.
    overrides = {"cache.enabled": False, **overrides}
    settings = make_settings(providers=PROVIDERS, routes=routes or {}, **overrides)
    gateway, built = await start(settings, {**BUILTIN_KINDS, "scripted": scripted_factory})
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield Env(gateway, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _route(*deployments: str, **extra: Any) -> dict[str, Any]:
    listed = [dict(zip(("provider", "model"), d.split("/", 1), strict=True)) for d in deployments]
    return {"deployments": listed, **extra}


def _request(model: str, cls: type = chat_pb2.CompleteRequest, text: str = "hi") -> Any:
    request = cls(model=model)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text=text)
    return request


async def _stream(
    env: Env, request: Any, **kw: Any
) -> tuple[list[chat_pb2.StreamCompleteResponse], dict[str, str]]:
    call = env.chat.StreamComplete(request, **kw)
    events = [event async for event in call]
    return events, dict(await call.trailing_metadata())


def _text(events: list[chat_pb2.StreamCompleteResponse]) -> str:
    return "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")


async def test_fallback_after_429_before_the_first_chunk() -> None:
    async with serve({"smart": _route("mock/rate-limited", "mock/echo")}) as env:
        call = env.chat.Complete(_request("smart"))
        response = await call
        assert response.message.parts[0].text == "echo: hi"
        assert (response.route.provider, response.route.model, response.route.attempt) == ("mock", "echo", 2)
        trailers = dict(await call.trailing_metadata())
        assert (trailers["homa-provider"], trailers["homa-model"], trailers["homa-attempts"]) == (
            "mock",
            "echo",
            "2",
        )


async def test_stream_falls_back_after_5xx_and_the_route_event_names_the_server() -> None:
    async with serve({"smart": _route("mock/unavailable", "mock2/echo")}) as env:
        events, trailers = await _stream(env, _request("smart", chat_pb2.StreamCompleteRequest))
        assert events[0].WhichOneof("event") == "route"
        assert (events[0].route.provider, events[0].route.model, events[0].route.attempt) == (
            "mock2",
            "echo",
            2,
        )
        assert [e.WhichOneof("event") for e in events].count("route") == 1
        assert events[-1].WhichOneof("event") == "finish"
        assert _text(events) == "echo: hi"
        assert trailers["homa-provider"] == "mock2"
        assert trailers["homa-attempts"] == "2"


async def test_stream_falls_back_after_a_first_token_timeout() -> None:
    routes = {"smart": _route("mock/slow", "mock/echo", first_token_timeout_s=0.05)}
    async with serve(routes) as env:
        started = time.monotonic()
        events, _ = await _stream(env, _request("smart", chat_pb2.StreamCompleteRequest), timeout=10)
        assert time.monotonic() - started < 2.0
        assert (events[0].route.model, events[0].route.attempt) == ("echo", 2)


async def test_request_fallback_models_and_route_fallbacks() -> None:
    routes = {"primary": _route("mock/unavailable", fallbacks=["backup"]), "backup": _route("mock2/echo")}
    async with serve(routes) as env:
        request = _request("mock/rate-limited")
        request.options.fallback_models.append("mock/echo")
        response = await env.chat.Complete(request)
        assert (response.route.provider, response.route.model, response.route.attempt) == ("mock", "echo", 2)
        response = await env.chat.Complete(_request("primary"))
        assert (response.route.provider, response.route.model) == ("mock2", "echo")


async def test_no_retry_after_the_first_chunk() -> None:
    routes = {"smart": _route("mock/die-midway", "mock/echo")}
    async with serve(routes, **{"resilience.retry.max_attempts": 3}) as env:
        call = env.chat.StreamComplete(_request("smart", chat_pb2.StreamCompleteRequest))
        seen = []
        with pytest.raises(aio.AioRpcError) as info:
            async for event in call:
                seen.append(event)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_STREAM_INTERRUPTED"
        assert (seen[0].route.model, seen[0].route.attempt) == ("die-midway", 1)
        assert "delta" in [e.WhichOneof("event") for e in seen]
        assert dict(info.value.trailing_metadata() or ())["homa-attempts"] == "1"


async def test_all_candidates_failing_gives_one_error_listing_each_attempt() -> None:
    async with serve({"smart": _route("mock/unavailable", "mock/rate-limited")}) as env:
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(_request("smart"))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = status_details(info.value)
        meta = details["ErrorInfo"].metadata
        assert details["ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
        assert meta["attempts"] == "2"
        assert meta["attempt_1"] == "mock/unavailable UPSTREAM_UNAVAILABLE"
        assert meta["attempt_2"] == "mock/rate-limited UPSTREAM_RATE_LIMITED"
        assert "UPSTREAM_UNAVAILABLE" in (info.value.details() or "")
        assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 2.0


async def test_retry_after_is_honoured_and_bounded() -> None:
    overrides = {"resilience.retry.max_attempts": 2, "resilience.retry.max_retry_after_s": 1.0}
    async with serve(**overrides) as env:
        env.scripted.script["m"] = [Step(rate_limited(0.3))]
        started = time.monotonic()
        response = await env.chat.Complete(_request("s/m"), timeout=10)
        assert response.route.attempt == 2
        (_, first), (_, second) = env.scripted.calls
        assert second - first >= 0.3
        assert time.monotonic() - started < 2.0
        env.scripted.script["m"] = [Step(rate_limited(5.0))]  # above max_retry_after_s: not waited for
        started = time.monotonic()
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(_request("s/m"), timeout=10)
        assert time.monotonic() - started < 1.0
        assert status_details(info.value)["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 5.0


async def test_deadline_is_respected_end_to_end_across_retries() -> None:
    overrides = {"resilience.retry.max_attempts": 10, "resilience.retry.base_delay_s": 0.1}
    async with serve({"smart": _route("s/m")}, **overrides) as env:
        env.scripted.default = Step(unavailable(), delay_s=0.15)  # ten attempts would take >= 1.5 s
        started = time.monotonic()
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(_request("smart"), timeout=0.5)
        assert time.monotonic() - started < 0.8
        assert 2 <= len(env.scripted.calls) <= 4
        # Either the deadline cut an attempt, or the next backoff would not fit and the last
        # upstream error came back early: never a wait past the deadline.
        assert info.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)

        env.scripted.default = Step(delay_s=5)  # an attempt outliving the budget
        stream = _request("smart", chat_pb2.StreamCompleteRequest)
        stream.options.timeout.FromMilliseconds(400)
        started = time.monotonic()
        with pytest.raises(aio.AioRpcError) as info:
            await _stream(env, stream, timeout=10)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert status_details(info.value)["ErrorInfo"].reason == "DEADLINE_EXCEEDED"
        assert time.monotonic() - started < 1.0


async def test_breaker_opens_then_recovers_half_open_and_shows_in_list_providers() -> None:
    overrides = {"resilience.breaker.consecutive_failures": 2, "resilience.breaker.cooldown_s": 0.3}
    async with serve({"smart": _route("s/m", "mock/echo")}, **overrides) as env:
        env.scripted.script["m"] = [Step(unavailable()), Step(unavailable())]
        for _ in range(2):
            assert (await env.chat.Complete(_request("smart"))).route.attempt == 2
        listed = {
            p.name: p for p in (await env.admin.ListProviders(admin_pb2.ListProvidersRequest())).providers
        }
        assert listed["s"].circuit_state == admin_pb2.CIRCUIT_STATE_OPEN
        assert listed["s"].last_error.reason == "UPSTREAM_UNAVAILABLE"
        assert listed["mock"].circuit_state == admin_pb2.CIRCUIT_STATE_CLOSED
        response = await env.chat.Complete(_request("smart"))
        assert (response.route.provider, response.route.attempt) == ("mock", 1)  # s skipped while open
        assert len(env.scripted.calls) == 2
        await asyncio.sleep(0.35)  # the cool-down is a time span: nothing to await but the clock
        listed = {
            p.name: p for p in (await env.admin.ListProviders(admin_pb2.ListProvidersRequest())).providers
        }
        assert listed["s"].circuit_state == admin_pb2.CIRCUIT_STATE_HALF_OPEN
        response = await env.chat.Complete(_request("smart"))
        assert (response.route.provider, response.route.attempt) == ("s", 1)  # the probe succeeded
        listed = {
            p.name: p for p in (await env.admin.ListProviders(admin_pb2.ListProvidersRequest())).providers
        }
        assert listed["s"].circuit_state == admin_pb2.CIRCUIT_STATE_CLOSED


async def test_only_candidate_with_open_circuit_is_unavailable() -> None:
    async with serve(**{"resilience.breaker.consecutive_failures": 1}) as env:
        env.scripted.script["m"] = [Step(unavailable())]
        with pytest.raises(aio.AioRpcError):
            await env.chat.Complete(_request("s/m"))
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(_request("s/m"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        details = status_details(info.value)
        assert details["ErrorInfo"].reason == "CIRCUIT_OPEN"
        assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() > 0


async def test_images_go_to_a_capable_deployment() -> None:
    routes = {
        "smart": {
            "deployments": [
                {"provider": "mock", "model": "echo"},
                {"provider": "mock2", "model": "echo", "capabilities": ["images"]},
            ]
        }
    }
    async with serve(routes) as env:
        assert (await env.chat.Complete(_request("smart"))).route.provider == "mock"
        request = _request("smart")
        request.messages[0].parts.add(
            inline_data=content_pb2.InlineData(mime_type="image/png", data=b"\x89PNG")
        )
        assert (await env.chat.Complete(request)).route.provider == "mock2"
        request.model = "text"
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(request)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # unknown alias


async def test_low_priority_is_shed_when_the_deployment_is_saturated() -> None:
    routes = {"busy": {"deployments": [{"provider": "s", "model": "m", "max_concurrency": 1}]}}
    overrides = {"resilience.admission.low_priority_max_wait_s": 0.0}
    async with serve(routes, **overrides) as env:
        env.scripted.script["m"] = [Step(delay_s=0.5)]
        holder = asyncio.ensure_future(env.chat.Complete(_request("busy"), timeout=10))
        for _ in range(200):
            if env.scripted.calls:
                break
            await asyncio.sleep(0.005)
        low = _request("busy")
        low.options.priority = chat_pb2.PRIORITY_LOW
        with pytest.raises(aio.AioRpcError) as info:
            await env.chat.Complete(low, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert status_details(info.value)["ErrorInfo"].reason == "OVERLOADED"
        high = _request("busy")
        high.options.priority = chat_pb2.PRIORITY_HIGH
        answered = await env.chat.Complete(high, timeout=10)  # waits for the slot instead
        assert answered.route.provider == "s"
        await holder


async def test_alias_as_default_model_and_for_count_tokens() -> None:
    routes = {"smart": _route("mock2/echo", "mock/echo")}
    async with serve(routes, default_model="smart") as env:
        response = await env.chat.Complete(_request(""))
        assert (response.route.provider, response.route.model) == ("mock2", "echo")
        counted = await env.chat.CountTokens(
            chat_pb2.CountTokensRequest(model="smart", messages=_request("smart").messages)
        )
        assert counted.input_tokens > 0


async def test_usage_is_recorded_once_against_the_serving_deployment() -> None:
    async with serve({"smart": _route("mock/unavailable", "mock2/echo")}) as env:
        recorder = MemoryRecorder()
        env.gateway.dispatcher.recorder = recorder
        await env.chat.Complete(_request("smart"))
        await _stream(env, _request("smart", chat_pb2.StreamCompleteRequest))
        assert [(r.provider, r.model, r.attempts, r.status) for r in recorder.usage_records] == [
            ("mock2", "mock2/echo", 2, "completed"),
            ("mock2", "mock2/echo", 2, "completed"),
        ]


async def test_converse_turns_go_through_the_route() -> None:
    async with serve({"smart": _route("mock/unavailable", "mock2/echo")}) as env:

        async def turns() -> AsyncIterator[chat_pb2.ConverseRequest]:
            yield chat_pb2.ConverseRequest(start=chat_pb2.ConverseStart(model="smart"))
            yield chat_pb2.ConverseRequest(message=_request("smart").messages[0])

        responses = [r async for r in env.chat.Converse(turns())]
        route = next(r.route for r in responses if r.WhichOneof("event") == "route")
        assert (route.provider, route.model, route.attempt) == ("mock2", "echo", 2)
        assert responses[-1].turn_complete.message.parts[0].text == "echo: hi"
