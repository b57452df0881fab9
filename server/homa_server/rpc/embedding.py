"""EmbeddingService servicer, Embed part: gRPC in, routing/embedding.py below.

The collection RPCs are served by the other EmbeddingService part, rpc/collections.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grpc import aio

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.observability.call_state import current_call
from homa_server.routing.embedding import EmbeddingDispatcher

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]


def request_id() -> str:
    """The gateway request id of the current RPC ("" outside an RPC)."""
    state = current_call.get()
    return state.request_id if state is not None else ""


class EmbeddingServicer:
    """Implements homa.embedding.v1.EmbeddingService.Embed."""

    def __init__(self, gateway: Gateway) -> None:
        self._dispatcher = EmbeddingDispatcher(gateway.resolver, gateway.outbox)

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: Context
    ) -> embedding_pb2.EmbedResponse:
        return await self._dispatcher.embed(request, context.time_remaining(), request_id())
