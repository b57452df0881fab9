"""Server core through real stubs: unimplemented RPCs, health, reflection, backstop, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.audio.v1 import audio_service_pb2_grpc as audio_grpc
from homa.batch.v1 import batch_service_pb2 as batch_pb2
from homa.batch.v1 import batch_service_pb2_grpc as batch_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.image.v1 import image_service_pb2 as image_pb2
from homa.image.v1 import image_service_pb2_grpc as image_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway, start, stop
from homa_server.providers.base import CallContext
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.chat import ChatDispatcher
from homa_server.routing.resolver import ModelResolver
from homa_server.rpc.server import build_server
from homa_server.settings import ProviderSettings
from tests.conftest import RunningServer, make_settings, status_details


def _assert_unimplemented(error: aio.AioRpcError, rpc: str) -> None:
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert rpc in (error.details() or "")
    assert status_details(error)["ErrorInfo"].reason == "NOT_IMPLEMENTED"


@pytest.fixture
async def bare() -> AsyncIterator[aio.Channel]:
    """A server with no servicer at all: every RPC must answer UNIMPLEMENTED with its own kind."""
    built = build_server(make_settings().server, {})
    await built.server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            yield channel
    finally:
        await built.server.stop(0)


async def test_unimplemented_unary_rpc_names_itself(bare: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await image_grpc.ImageServiceStub(bare).Generate(image_pb2.GenerateRequest(prompt="a cat"))
    _assert_unimplemented(info.value, "homa.image.v1.ImageService/Generate")


async def test_unimplemented_server_stream_rpc_names_itself(bare: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in audio_grpc.AudioServiceStub(bare).Synthesize(audio_pb2.SynthesizeRequest()):
            pass
    _assert_unimplemented(info.value, "homa.audio.v1.AudioService/Synthesize")


# The request streams below are empty: the server answers before reading, and a client still
# writing into a call the server has already closed can race in gRPC core (seen as INTERNAL).


async def test_unimplemented_client_stream_rpc_names_itself(bare: aio.Channel) -> None:
    async def chunks() -> AsyncIterator[audio_pb2.TranscribeRequest]:
        return
        yield  # pragma: no cover - makes this an async generator

    with pytest.raises(aio.AioRpcError) as info:
        await audio_grpc.AudioServiceStub(bare).Transcribe(chunks())
    _assert_unimplemented(info.value, "homa.audio.v1.AudioService/Transcribe")


async def test_unimplemented_bidi_rpc_names_itself(bare: aio.Channel) -> None:
    async def chunks() -> AsyncIterator[audio_pb2.StreamTranscribeRequest]:
        return
        yield  # pragma: no cover - makes this an async generator

    with pytest.raises(aio.AioRpcError) as info:
        async for _ in audio_grpc.AudioServiceStub(bare).StreamTranscribe(chunks()):
            pass
    _assert_unimplemented(info.value, "homa.audio.v1.AudioService/StreamTranscribe")


async def test_rpcs_still_unimplemented_in_the_gateway_name_themselves(server: RunningServer) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await batch_grpc.BatchServiceStub(server.channel).CreateBatch(batch_pb2.CreateBatchRequest())
    _assert_unimplemented(info.value, "homa.batch.v1.BatchService/CreateBatch")
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in admin_grpc.AdminServiceStub(server.channel).StreamEvents(
            admin_pb2.StreamEventsRequest()
        ):
            pass
    _assert_unimplemented(info.value, "homa.admin.v1.AdminService/StreamEvents")


async def test_health_reports_serving_per_service(server: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", "homa.chat.v1.ChatService", "homa.batch.v1.BatchService"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_every_service(server: RunningServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for response in stub.ServerReflectionInfo(ask()):
        names |= {s.name for s in response.list_services_response.service}
    assert {"homa.chat.v1.ChatService", "homa.admin.v1.AdminService", "grpc.health.v1.Health"} <= names


async def test_admin_lists_models_providers_and_server_info(server: RunningServer) -> None:
    stub = admin_grpc.AdminServiceStub(server.channel)
    models = await stub.ListModels(admin_pb2.ListModelsRequest())
    ids = [m.id for m in models.models]
    assert "mock/echo" in ids
    assert ids == sorted(ids)
    first = await stub.ListModels(admin_pb2.ListModelsRequest(page_size=2))
    second = await stub.ListModels(admin_pb2.ListModelsRequest(page_size=2, page_token=first.next_page_token))
    assert [m.id for m in first.models] + [m.id for m in second.models] == ids[:4]
    model = await stub.GetModel(admin_pb2.GetModelRequest(model="mock/tool"))
    assert model.model.provider == "mock"
    providers = await stub.ListProviders(admin_pb2.ListProvidersRequest(probe=True))
    assert [(p.name, p.kind, p.health) for p in providers.providers] == [
        ("local", "local", admin_pb2.PROVIDER_HEALTH_HEALTHY),
        ("mock", "mock", admin_pb2.PROVIDER_HEALTH_HEALTHY),
    ]
    info = await stub.GetServerInfo(admin_pb2.GetServerInfoRequest())
    assert "homa.chat.v1" in info.api_versions
    assert info.enabled_providers == ["mock", "local"]
    wanted = {"auth:none", "storage:sqlite", "cache:memory", "limits:memory", "reflection"}
    assert wanted <= set(info.features)
    with pytest.raises(aio.AioRpcError) as bad:
        await stub.ListModels(admin_pb2.ListModelsRequest(page_token="not-a-token!"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class _ExplodingProvider:
    """A chat provider with a bug: raises a plain exception carrying a key-shaped secret (which the
    log redaction must mask: the whole-suite log check in tests/log_canaries.py looks for it)."""

    name = "boom"
    kind = "test"

    async def aclose(self) -> None:
        return None

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        raise ValueError("secret sk-canary-0123456789abcdef leaked in a bug")

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        yield chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text="partial"))
        raise ValueError("secret sk-canary-0123456789abcdef leaked in a bug")


async def test_unexpected_exception_becomes_internal_without_leaking() -> None:
    settings = make_settings()
    registry = ProviderRegistry({"boom": _ExplodingProvider()}, {"boom": ProviderSettings(kind="test")})
    resolver = ModelResolver(registry, "boom/x")
    gateway = Gateway(settings, registry, resolver, ChatDispatcher(resolver))
    built = build_server(settings.server, gateway.servicers())
    await built.server.start()
    request = chat_pb2.CompleteRequest(model="boom/x")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    try:
        async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = chat_grpc.ChatServiceStub(channel)
            with pytest.raises(aio.AioRpcError) as unary:
                await stub.Complete(request)
            stream_request = chat_pb2.StreamCompleteRequest.FromString(request.SerializeToString())
            with pytest.raises(aio.AioRpcError) as streamed:
                async for _ in stub.StreamComplete(stream_request):
                    pass
    finally:
        await stop(gateway, built, 0)
    for error in (unary.value, streamed.value):
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "sk-canary" not in (error.details() or "")
        assert status_details(error)["ErrorInfo"].reason == "INTERNAL"


async def test_graceful_stop_drains_streams_and_refuses_new_calls() -> None:
    settings = make_settings(**{"server.grace_period_s": 5.0})
    gateway, built = await start(settings)
    request = chat_pb2.StreamCompleteRequest(model="mock/slow")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="drain me")  # ~8 events of 200 ms
    async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        stub = chat_grpc.ChatServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        call = stub.StreamComplete(request)
        assert (await call.read()).WhichOneof("event") == "route"
        stopping = asyncio.create_task(stop(gateway, built, settings.server.grace_period_s))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.sleep(0.1)
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.Complete(chat_pb2.CompleteRequest.FromString(request.SerializeToString()))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        events = []
        while (event := await call.read()) is not aio.EOF:
            events.append(event.WhichOneof("event"))
        assert events[-1] == "finish"
        assert await call.code() == grpc.StatusCode.OK
        await stopping
