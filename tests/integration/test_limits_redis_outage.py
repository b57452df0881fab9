"""Redis stopped or killed in the middle of a run: the configured policy, and no call waits long."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import start, stop
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.policy.limits import Limiter
from homa_server.settings import LimitSettings
from tests.conftest import make_settings, status_details
from tests.integration.limits_support import private_redis

TIMEOUT_S = 0.2
SLACK_S = 0.05
RECHECK_S = 0.1
PRINCIPAL = Principal(subject="key_1", tenant="acme", scopes=frozenset(), method="api_key", key_id="key_1")


def _request() -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="mock/echo", max_output_tokens=50)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello")
    return request


def _limiter(url: str, policy: str) -> Limiter:
    settings = LimitSettings.model_validate(
        {
            "backend": "redis",
            "redis_failure": policy,
            "redis": {"url": url, "timeout_s": TIMEOUT_S, "recheck_after_s": RECHECK_S},
            "tenant": {"requests_per_minute": 1000, "tokens_per_minute": 10**6},
        }
    )
    return Limiter.from_settings(settings)


async def _timed_reserve(limiter: Limiter) -> tuple[float, GatewayError | None]:
    started = time.monotonic()
    try:
        reservation = await limiter.reserve(_request(), PRINCIPAL, provider="mock", kind="mock", model="echo")
        await reservation.settle(tokens=10, cost_micros=0)
    except GatewayError as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


@pytest.mark.parametrize("policy", ["open", "closed"])
@pytest.mark.parametrize("outage", ["stopped", "killed"])
async def test_calls_follow_the_policy_and_never_wait_past_the_timeout(
    tmp_path: Path, policy: str, outage: str
) -> None:
    with private_redis(tmp_path) as redis:
        limiter = _limiter(redis.url, policy)
        try:
            for _ in range(20):
                elapsed, error = await _timed_reserve(limiter)
                assert error is None
            assert limiter.stats.failures == 0
            if outage == "stopped":
                redis.pause()
            else:
                redis.kill()
            worst = 0.0
            outcomes = []
            for _ in range(40):  # spans several recheck intervals: Redis is tried again and again
                elapsed, error = await _timed_reserve(limiter)
                worst = max(worst, elapsed)
                outcomes.append(error)
                await asyncio.sleep(0.01)  # calls spread over several recheck intervals
            assert worst <= TIMEOUT_S + SLACK_S, f"a call waited {worst:.3f} s"
            assert limiter.stats.failures >= 3, "Redis is tried again after each recheck interval"
            if policy == "open":
                assert outcomes == [None] * 40
                assert limiter.stats.failed_open == 40
            else:
                assert all(e is not None for e in outcomes)
                assert {(e.code, e.reason) for e in outcomes if e is not None} == {
                    (Code.UNAVAILABLE, Reason.LIMITS_UNAVAILABLE)
                }
            if outage == "stopped":
                redis.resume()
            else:
                redis.start()
            deadline = time.monotonic() + 5
            while True:  # back to counting once the recheck interval has passed
                before = limiter.stats.admitted
                elapsed, error = await _timed_reserve(limiter)
                if error is None and limiter.stats.admitted == before + 1:
                    break
                assert time.monotonic() < deadline, "the limiter did not recover"
        finally:
            await limiter.aclose()


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_the_gateway_answers_promptly_while_redis_is_stopped(tmp_path: Path, policy: str) -> None:
    with private_redis(tmp_path) as redis:
        overrides = {
            "limits.backend": "redis",
            "limits.redis_failure": policy,
            "limits.redis": {"url": redis.url, "timeout_s": TIMEOUT_S, "recheck_after_s": RECHECK_S},
            "limits.tenant": {"requests_per_minute": 10_000},
            "cache.enabled": False,  # every call reaches the limiter (a cache hit is free)
        }
        gateway, built = await start(make_settings(**overrides))
        try:
            async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
                stub = chat_grpc.ChatServiceStub(channel)
                await stub.Complete(_request())
                redis.pause()
                worst = 0.0
                for _ in range(15):
                    started = time.monotonic()
                    reason = ""
                    try:
                        await stub.Complete(_request(), timeout=5)
                        outcome = grpc.StatusCode.OK
                    except aio.AioRpcError as error:
                        outcome, reason = error.code(), status_details(error)["ErrorInfo"].reason
                    worst = max(worst, time.monotonic() - started)
                    expected = grpc.StatusCode.OK if policy == "open" else grpc.StatusCode.UNAVAILABLE
                    assert outcome is expected
                    assert reason == ("" if policy == "open" else "LIMITS_UNAVAILABLE")
                    await asyncio.sleep(0.03)  # calls spread over several recheck intervals
                assert worst <= TIMEOUT_S + SLACK_S, f"a call waited {worst:.3f} s"
                limiter = gateway.dispatcher.limiter
                assert limiter is not None
                assert limiter.stats.failures >= 2
        finally:
            redis.kill()
            await stop(gateway, built, 0)
