"""Capability protocols that provider adapters implement, and the call context they receive.

Adapters translate homa protobuf messages to and from their vendor's wire format directly; there is
no intermediate model. A provider implements only the protocols for what it can do; the registry
and routing check capabilities with `isinstance` against these runtime-checkable protocols.

Cancellation: `stream_chat` is an async generator. When the caller stops iterating (client cancel,
deadline), the generator is closed and the adapter must close its upstream HTTP response at once
(use `async with` around the response). Adapters never swallow `CancelledError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.media.images import UploadLimits


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-call facts an adapter needs besides the request.

    Args:
        model: the provider-side model identifier chosen by routing (no provider prefix).
        deadline: absolute `time.monotonic()` by which the call must finish, or None.
        request_id: the gateway request id, forwarded upstream where the vendor accepts one.
        first_token_timeout: seconds allowed until the first streamed event, or None.
    """

    model: str
    deadline: float | None = None
    request_id: str = ""
    first_token_timeout: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


@runtime_checkable
class Provider(Protocol):
    """What every provider instance has."""

    @property
    def name(self) -> str:
        """Instance name from settings (for example "openai" or "mock")."""
        ...

    @property
    def kind(self) -> str:
        """Adapter kind (for example "openai")."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections. Called once at shutdown."""
        ...


@runtime_checkable
class ChatProvider(Provider, Protocol):
    """Chat completions, whole and streamed."""

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """Run one completion.

        Returns a response with message, finish reason, raw finish reason, usage and id set; the
        gateway fills in `route`.

        Raises:
            GatewayError: every vendor error, mapped (see docs/errors.md).
        """
        ...

    def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """Stream one completion as events: `delta`, `tool_call_delta`, `tool_call`, `usage` (cumulative)
        and, last, exactly one `finish`. The gateway adds the `route` event itself.

        Raises:
            GatewayError: before or during the stream; an upstream that ends without its terminator
                raises UPSTREAM_STREAM_INTERRUPTED, never a silent end.
        """
        ...


@runtime_checkable
class TokenCountingProvider(Provider, Protocol):
    """Exact input-token counting by the provider's own endpoint or tokenizer."""

    async def count_tokens(
        self, request: chat_pb2.CountTokensRequest, ctx: CallContext
    ) -> chat_pb2.CountTokensResponse:
        """Count the input tokens `request` would use on `ctx.model`."""
        ...


@runtime_checkable
class ModelListingProvider(Provider, Protocol):
    """Lists the models the provider serves."""

    async def list_models(self) -> list[str]:
        """Model identifiers as the provider names them."""
        ...


@dataclass(frozen=True, slots=True)
class EmbeddingLimits:
    """How routing may call an embedding model: at most `max_inputs` inputs per upstream request and
    at most `max_concurrency` such requests at once for one Embed call."""

    max_inputs: int
    max_concurrency: int = 4


@runtime_checkable
class EmbeddingProvider(Provider, Protocol):
    """Embeddings of texts (and images, for multimodal models)."""

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """Batching limits for `model` (no I/O)."""
        ...

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embed every input of `request` (at most `embedding_limits(ctx.model).max_inputs`).

        Returns one `Embedding` per input with `index` = position in `request.inputs` and the
        vector in `packed` (little-endian float32; `values` is accepted too), whatever
        `request.encoding` says: routing applies the requested encoding. Also `model`,
        `dimensions` and `usage.input_tokens` when the vendor reports them; the gateway fills in
        `route`. `providers/_embedding_wire.py` builds such responses.

        Raises:
            GatewayError: INVALID_ARGUMENT for inputs the model cannot take (checked before any
                upstream call); mapped vendor errors otherwise.
        """
        ...


@runtime_checkable
class TranscriptionProvider(Provider, Protocol):
    """Speech-to-text and speech translation of a whole recorded file."""

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        """Transcribe `audio` (the whole file, of type `config.mime_type`) with `ctx.model`.

        Returns text, language, duration and, when `config.timestamp_granularities` asks for them,
        segments and words; the gateway fills in `route`. `config` was validated by the gateway.

        Raises:
            GatewayError: mapped vendor errors; FAILED_PRECONDITION for a model that cannot transcribe.
        """
        ...

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        """Translate the speech in `audio` into English text; otherwise like `transcribe`."""
        ...


@runtime_checkable
class StreamingTranscriptionProvider(Provider, Protocol):
    """Native live transcription. Providers without it are served by windowed `transcribe` calls."""

    def stream_transcribe(
        self,
        config: audio_pb2.StreamTranscriptionConfig,
        audio: AsyncIterator[bytes],
        ctx: CallContext,
    ) -> AsyncGenerator[audio_pb2.StreamTranscribeResponse, None]:
        """Consume `audio` chunks until it ends and yield `result`, `speech_activity` and `usage`
        events while audio still arrives. The gateway adds `route` and the `finish` event.
        Closing the generator must close the upstream session at once."""
        ...


@runtime_checkable
class SpeechProvider(Provider, Protocol):
    """Text-to-speech."""

    def synthesize(
        self, request: audio_pb2.SynthesizeRequest, ctx: CallContext
    ) -> AsyncGenerator[audio_pb2.AudioChunk, None]:
        """Stream synthesised audio of `request` (validated by the gateway) as chunks with `data`
        and `mime_type` set (any size; the gateway re-chunks to at most 1 MiB and numbers them).

        Closing the generator must close the upstream response at once.

        Raises:
            GatewayError: INVALID_ARGUMENT for a voice or format the model does not offer; mapped
                vendor errors otherwise.
        """
        ...

    async def list_voices(self) -> list[audio_pb2.Voice]:
        """Every voice this provider offers, with `provider` set to the instance name."""
        ...


@runtime_checkable
class ImageProvider(Provider, Protocol):
    """Image generation, editing and variations (routing/image.py calls these).

    Every result is returned as a `GenerateResponse` (the Edit and Variation responses have the same
    fields); images carry their bytes inline, never a URL. Input images arrive inline: routing has
    fetched URLs (SSRF guard) and applied payload optimisation within `image_upload_limits`.
    """

    def image_upload_limits(self, model: str) -> UploadLimits:
        """Longest side, bytes and formats `model` accepts for uploaded images (no I/O)."""
        ...

    async def generate_images(
        self, request: image_pb2.GenerateRequest, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Generate images from `request.prompt`. Raises GatewayError (mapped vendor errors)."""
        ...

    def stream_generate_images(
        self, request: image_pb2.StreamGenerateRequest, ctx: CallContext
    ) -> AsyncGenerator[image_pb2.StreamGenerateResponse, None]:
        """Stream `progress`, `partial_image`, `image` and cumulative `usage` events; the gateway adds
        `route` and `finish`. An upstream that ends before every image raises
        UPSTREAM_STREAM_INTERRUPTED."""
        ...

    async def edit_images(
        self,
        request: image_pb2.EditRequest,
        images: list[content_pb2.InlineData],
        mask: content_pb2.InlineData | None,
        ctx: CallContext,
    ) -> image_pb2.GenerateResponse:
        """Edit `images` (already inline) with `request.prompt` and the optional `mask`."""
        ...

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Variations of `image` (already inline)."""
        ...
