"""Rate limits and budgets through the gateway: details of a refusal, and settlement however a call
ends (completed, cut stream, cancelled stream)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import start, stop
from homa_server.policy.limits import Limiter
from tests.conftest import RunningServer, make_settings, status_details


def _request(
    model: str = "mock/echo", max_output: int = 16, cls: type = chat_pb2.CompleteRequest
) -> chat_pb2.CompleteRequest:
    request = cls(model=model, max_output_tokens=max_output)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    return request  # type: ignore[no-any-return]


@pytest.fixture
async def limited(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    """A server with the limits given as the indirect parameter (`limits.*` settings)."""
    overrides: dict[str, object] = {f"limits.{key}": value for key, value in request.param.items()}
    overrides["cache.enabled"] = False  # every call reaches the limiter (a cache hit is free)
    gateway, built = await start(make_settings(**overrides))
    # One UTC minute for the whole test: token windows never roll over in the middle of it.
    frozen = time.time()
    gateway.dispatcher.limiter = Limiter(gateway.settings.limits, clock=lambda: frozen)
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _limits(**values: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("limited", [values], indirect=True, ids=["limits"])


@_limits(tenant={"requests_per_minute": 2})
async def test_refusal_names_the_limit_and_when_to_retry(limited: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(limited.channel)
    await stub.Complete(_request())
    await stub.Complete(_request())
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(_request())
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = status_details(caught.value)
    assert details["ErrorInfo"].reason == "RATE_LIMITED"
    assert [(v.subject, v.description) for v in details["QuotaFailure"].violations] == [
        ("tenant:default requests_per_minute", "2 requests per minute")
    ]
    assert 0 < details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 60
    stream = stub.StreamComplete(_request(cls=chat_pb2.StreamCompleteRequest))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def _admitted(stub: chat_grpc.ChatServiceStub, model: str = "mock/echo") -> bool:
    try:
        await stub.Complete(_request(model=model, max_output=400))
    except aio.AioRpcError as error:
        refused = error
    else:
        return True
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    violations = status_details(refused)["QuotaFailure"].violations
    assert [v.subject for v in violations] == ["tenant:default tokens_per_minute"]
    return False


async def _eventually_admitted(stub: chat_grpc.ChatServiceStub) -> None:
    """The server settles after the client saw the end of a call: give it a bounded moment."""
    deadline = time.monotonic() + 5
    while not await _admitted(stub):
        assert time.monotonic() < deadline, "the reservation was never settled"
        await asyncio.sleep(0.02)


@_limits(tenant={"tokens_per_minute": 600})
async def test_reservations_are_settled_however_a_stream_ends(limited: RunningServer) -> None:
    stub = chat_grpc.ChatServiceStub(limited.channel)
    # Each call reserves ~410 tokens (prompt + max_output_tokens 400) and really uses ~10: settled
    # calls leave room; a call in flight holds its reservation.
    for _ in range(5):
        assert await _admitted(stub)
    held = stub.StreamComplete(
        _request(model="mock/slow", max_output=400, cls=chat_pb2.StreamCompleteRequest)
    )
    first = await held.read()
    assert first.HasField("route")
    assert not await _admitted(stub), "the stream in flight holds its reservation"
    held.cancel()  # cancelled stream: settled with what was delivered
    await _eventually_admitted(stub)

    cut = stub.StreamComplete(
        _request(model="mock/die-midway", max_output=400, cls=chat_pb2.StreamCompleteRequest)
    )
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in cut:
            pass
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    await _eventually_admitted(stub)  # the cut stream was settled too

    with pytest.raises(aio.AioRpcError):
        await stub.Complete(_request(model="mock/unavailable", max_output=400))
    await _eventually_admitted(stub)  # a failed call used nothing: refunded


async def test_an_api_key_limit_set_through_admin_applies_to_that_key() -> None:
    gateway, built = await start(make_settings(**{"auth.mode": ["none", "api_key"], "cache.enabled": False}))
    try:
        async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            created = await admin_grpc.AdminServiceStub(channel).CreateApiKey(
                admin_pb2.CreateApiKeyRequest(
                    api_key=admin_pb2.ApiKey(
                        name="limited",
                        scopes=["chat:write"],
                        rate_limits=admin_pb2.RateLimits(requests_per_minute=1),
                    )
                )
            )
            stub = chat_grpc.ChatServiceStub(channel)
            auth = (("authorization", f"Bearer {created.secret}"),)
            await stub.Complete(_request(), metadata=auth)
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Complete(_request(), metadata=auth)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            violations = status_details(caught.value)["QuotaFailure"].violations
            assert [v.subject for v in violations] == [
                f"key:{created.api_key.api_key_id} requests_per_minute"
            ]
            await stub.Complete(_request())  # the anonymous caller is not limited by that key
    finally:
        await stop(gateway, built, 0)
