"""AudioService servicer: gRPC in, routing/audio.py and routing/audio_live.py below.

Client-streamed uploads (Transcribe, Translate) and the live stream (StreamTranscribe) are read by
the dispatcher from the request iterator; Synthesize and StreamTranscribe return async generators,
which gRPC closes when the client cancels (the adapters then close their upstream requests).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from grpc import aio

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.observability.call_state import current_call
from homa_server.routing.audio import AudioDispatcher
from homa_server.routing.audio_live import LiveOptions, stream_transcribe

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

__all__ = ["AudioServicer"]


def _request_id() -> str:
    state = current_call.get()
    return state.request_id if state is not None else ""


class AudioServicer:
    """Implements homa.audio.v1.AudioService.

    Args:
        gateway: the running gateway (resolver, registry, outbox).
        live: windowing of live transcription for providers without native streaming.
    """

    def __init__(self, gateway: Gateway, live: LiveOptions | None = None) -> None:
        self.dispatcher = AudioDispatcher(gateway.resolver, gateway.registry, gateway.outbox)
        self.live = live or LiveOptions()

    async def Transcribe(
        self, requests: AsyncIterator[audio_pb2.TranscribeRequest], context: Context
    ) -> audio_pb2.TranscribeResponse:
        return await self.dispatcher.transcribe(requests, context.time_remaining(), _request_id())

    async def Translate(
        self, requests: AsyncIterator[audio_pb2.TranslateRequest], context: Context
    ) -> audio_pb2.TranslateResponse:
        return await self.dispatcher.translate(requests, context.time_remaining(), _request_id())

    def StreamTranscribe(
        self, requests: AsyncIterator[audio_pb2.StreamTranscribeRequest], context: Context
    ) -> AsyncGenerator[audio_pb2.StreamTranscribeResponse, None]:
        return stream_transcribe(
            self.dispatcher, requests, context.time_remaining(), _request_id(), self.live
        )

    def Synthesize(
        self, request: audio_pb2.SynthesizeRequest, context: Context
    ) -> AsyncGenerator[audio_pb2.SynthesizeResponse, None]:
        return self.dispatcher.synthesize(request, context.time_remaining(), _request_id())

    async def ListVoices(
        self, request: audio_pb2.ListVoicesRequest, context: Context
    ) -> audio_pb2.ListVoicesResponse:
        return await self.dispatcher.list_voices(request)
