"""ImageService servicer: gRPC in, routing/image.py below.

Generate, StreamGenerate, Edit, CreateVariation and Analyze call providers (Analyze through the chat
dispatcher); Convert runs locally. StreamGenerate returns the dispatcher's generator itself: the
interceptor iterates it and closes it on cancel, which closes the upstream stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from grpc import aio

from homa.image.v1 import image_service_pb2 as image_pb2
from homa_server.observability.call_state import current_call
from homa_server.routing.image import ImageDispatcher

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

__all__ = ["ImageServicer"]


def _request_id() -> str:
    state = current_call.get()
    return state.request_id if state is not None else ""


class ImageServicer:
    """Implements homa.image.v1.ImageService. `dispatcher` is exposed for tests (options, recorder)."""

    def __init__(self, gateway: Gateway) -> None:
        self.dispatcher = ImageDispatcher(gateway.resolver, gateway.dispatcher, gateway.outbox)

    async def Generate(
        self, request: image_pb2.GenerateRequest, context: Context
    ) -> image_pb2.GenerateResponse:
        return await self.dispatcher.generate(request, context.time_remaining(), _request_id())

    def StreamGenerate(
        self, request: image_pb2.StreamGenerateRequest, context: Context
    ) -> AsyncGenerator[image_pb2.StreamGenerateResponse, None]:
        return self.dispatcher.stream_generate(request, context.time_remaining(), _request_id())

    async def Edit(self, request: image_pb2.EditRequest, context: Context) -> image_pb2.EditResponse:
        return await self.dispatcher.edit(request, context.time_remaining(), _request_id())

    async def CreateVariation(
        self, request: image_pb2.CreateVariationRequest, context: Context
    ) -> image_pb2.CreateVariationResponse:
        return await self.dispatcher.create_variation(request, context.time_remaining(), _request_id())

    async def Analyze(self, request: image_pb2.AnalyzeRequest, context: Context) -> image_pb2.AnalyzeResponse:
        return await self.dispatcher.analyze(request, context.time_remaining(), _request_id())

    async def Convert(self, request: image_pb2.ConvertRequest, context: Context) -> image_pb2.ConvertResponse:
        return await self.dispatcher.convert(request)
