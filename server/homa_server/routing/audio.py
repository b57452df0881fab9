"""Audio dispatch: validate, resolve, call the provider, meter. Built once per process.

Contract of `AudioDispatcher`:
    * Requests are validated first (validation/audio.py); nothing is sent upstream for an invalid
      one. Uploads must start with `config` and carry at least one byte of audio.
    * Models resolve like chat models (routing/resolver.py); a provider without the capability
      answers FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED (`capability`: transcription or speech).
    * Every call that reached a provider writes exactly one usage record (completed, failed or
      cancelled) with `audio_seconds`: the duration of the transcribed audio, or of the synthesised
      audio when it can be computed (PCM and WAV; 0 otherwise).
    * Cancellation (client cancel, deadline) propagates into the adapter, which closes its upstream
      request at once.
    * Live transcription is in routing/audio_live.py.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.type.v1 import usage_pb2
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.providers.base import CallContext, Provider, SpeechProvider, TranscriptionProvider
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.audio_metering import AudioMeter, audio_duration
from homa_server.routing.resolver import ModelResolver
from homa_server.store.records import Recorder
from homa_server.validation.audio import (
    MAX_UPLOAD_BYTES,
    UploadBuffer,
    audio_before_config,
    check_synthesize,
    check_transcription_config,
    check_translation_config,
    duplicate_config,
    empty_audio,
)

__all__ = ["AudioDispatcher", "call_context", "read_upload"]

log = logging.getLogger("homa.audio")

MAX_AUDIO_CHUNK = 1024 * 1024  # bytes per AudioChunk sent to clients
_DEFAULT_PAGE = 100
_MAX_PAGE = 1000

Upload = audio_pb2.TranscribeRequest | audio_pb2.TranslateRequest


async def read_upload(requests: AsyncIterator[Upload]) -> tuple[Any, bytes]:
    """The `config` and the whole audio of a Transcribe or Translate stream (the config's type
    is the one of the stream: TranscriptionConfig or TranslationConfig).

    Raises:
        GatewayError: INVALID_ARGUMENT for audio before config, a repeated config, no audio, or
            audio over `MAX_UPLOAD_BYTES`.
    """
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("input") != "config":
        raise audio_before_config()
    buffer = UploadBuffer(MAX_UPLOAD_BYTES)
    async for item in requests:
        if item.WhichOneof("input") == "config":
            raise duplicate_config()
        buffer.add(item.audio_chunk)
    if buffer.size == 0:
        raise empty_audio()
    return first.config, buffer.data()


class AudioDispatcher:
    """Runs AudioService calls.

    Args:
        resolver: model names to providers.
        registry: every provider (for ListVoices).
        recorder: where usage records go (None: not recorded).
    """

    def __init__(
        self, resolver: ModelResolver, registry: ProviderRegistry, recorder: Recorder | None
    ) -> None:
        self._resolver = resolver
        self._registry = registry
        self.recorder = recorder

    def transcriber(self, model: str) -> tuple[TranscriptionProvider, str]:
        """The provider and provider-side model of `model`, checked to transcribe.

        Raises:
            GatewayError: MODEL_NOT_FOUND; FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
        """
        provider, name = self._resolve(model, TranscriptionProvider, "transcription")
        return cast(TranscriptionProvider, provider), name

    def speaker(self, model: str) -> tuple[SpeechProvider, str]:
        """The provider and provider-side model of `model`, checked to synthesise speech.

        Raises:
            GatewayError: MODEL_NOT_FOUND; FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
        """
        provider, name = self._resolve(model, SpeechProvider, "speech")
        return cast(SpeechProvider, provider), name

    def _resolve(self, model: str, protocol: type[Any], capability: str) -> tuple[Provider, str]:
        target = self._resolver.resolve(model)
        if not isinstance(target.provider, protocol):
            raise GatewayError(
                f"provider {target.provider.name!r} does not offer {capability}",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": target.provider.name, "capability": capability},
            )
        return target.provider, target.model

    async def transcribe(
        self,
        requests: AsyncIterator[audio_pb2.TranscribeRequest],
        remaining: float | None,
        request_id: str = "",
    ) -> audio_pb2.TranscribeResponse:
        """One Transcribe call (see the module docstring)."""
        config, audio = await read_upload(requests)
        assert isinstance(config, audio_pb2.TranscriptionConfig)
        check_transcription_config(config)
        provider, model = self.transcriber(config.model)
        meter = AudioMeter(self.recorder, provider, model, "audio.Transcribe")
        error: BaseException | None = None
        try:
            response = await provider.transcribe(config, audio, call_context(model, remaining, request_id))
            meter.audio_seconds = response.duration_seconds
            meter.usage.CopyFrom(response.usage)
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)
        response.route.CopyFrom(usage_pb2.Route(provider=provider.name, model=model, attempt=1))
        return response

    async def translate(
        self,
        requests: AsyncIterator[audio_pb2.TranslateRequest],
        remaining: float | None,
        request_id: str = "",
    ) -> audio_pb2.TranslateResponse:
        """One Translate call (see the module docstring)."""
        config, audio = await read_upload(requests)
        assert isinstance(config, audio_pb2.TranslationConfig)
        check_translation_config(config)
        provider, model = self.transcriber(config.model)
        meter = AudioMeter(self.recorder, provider, model, "audio.Translate")
        error: BaseException | None = None
        try:
            response = await provider.translate(config, audio, call_context(model, remaining, request_id))
            meter.audio_seconds = response.duration_seconds
            meter.usage.CopyFrom(response.usage)
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)
        response.route.CopyFrom(usage_pb2.Route(provider=provider.name, model=model, attempt=1))
        return response

    async def synthesize(
        self, request: audio_pb2.SynthesizeRequest, remaining: float | None, request_id: str = ""
    ) -> AsyncGenerator[audio_pb2.SynthesizeResponse, None]:
        """One Synthesize stream: `route`, audio chunks of at most 1 MiB numbered from 0, `finish`.

        Validation and resolution errors are raised on the first iteration, before any event.
        """
        check_synthesize(request)
        provider, model = self.speaker(request.model)
        yield audio_pb2.SynthesizeResponse(
            route=usage_pb2.Route(provider=provider.name, model=model, attempt=1)
        )
        meter = AudioMeter(self.recorder, provider, model, "audio.Synthesize")
        finish = audio_pb2.SynthesizeFinish(input_characters=len(request.input))
        header = b""
        mime = ""
        error: BaseException | None = None
        upstream = provider.synthesize(request, call_context(model, remaining, request_id))
        try:
            async for piece in upstream:
                mime = mime or piece.mime_type
                if len(header) < 44:
                    header += piece.data[: 44 - len(header)]
                for start in range(0, len(piece.data), MAX_AUDIO_CHUNK):
                    data = piece.data[start : start + MAX_AUDIO_CHUNK]
                    chunk = audio_pb2.AudioChunk(data=data, mime_type=mime, sequence=finish.chunk_count)
                    finish.chunk_count += 1
                    finish.total_bytes += len(data)
                    yield audio_pb2.SynthesizeResponse(audio=chunk)
            duration = audio_duration(mime, finish.total_bytes, header)
            if duration:
                finish.duration_seconds = duration
            meter.audio_seconds = duration
            yield audio_pb2.SynthesizeResponse(finish=finish)
        except BaseException as exc:
            error = exc
            raise
        finally:
            await upstream.aclose()
            meter.close(error)

    async def list_voices(self, request: audio_pb2.ListVoicesRequest) -> audio_pb2.ListVoicesResponse:
        """Voices of every speech provider (or of `request.provider` / the provider of
        `request.model`), ordered by provider then voice id, paged by an opaque offset token.

        A provider whose voices cannot be listed (for example missing local extras) is skipped
        unless it was asked for by name or model, in which case its error is raised.
        """
        if request.page_size < 0:
            raise invalid_field("page_size", "must not be negative")
        size = min(request.page_size or _DEFAULT_PAGE, _MAX_PAGE)
        offset = _offset(request.page_token)
        only_model = ""
        named = request.provider
        if request.model:
            provider, model = self.speaker(request.model)
            if named and named != provider.name:
                return audio_pb2.ListVoicesResponse()
            named, only_model = provider.name, f"{provider.name}/{model}"
        elif named:
            self._registry.get(named)  # NOT_FOUND / PROVIDER_NOT_FOUND for an unknown name
        voices: list[audio_pb2.Voice] = []
        for name, candidate in self._registry.items():
            if (named and name != named) or not isinstance(candidate, SpeechProvider):
                continue
            try:
                voices.extend(await candidate.list_voices())
            except GatewayError:
                if named:
                    raise
                log.warning("voices of provider %s are unavailable", name)
        voices = [v for v in voices if _matches(v, only_model, request.language)]
        voices.sort(key=lambda v: (v.provider, v.voice_id))
        page = voices[offset : offset + size]
        more = offset + size < len(voices)
        token = base64.urlsafe_b64encode(f"o:{offset + size}".encode()).decode() if more else ""
        return audio_pb2.ListVoicesResponse(voices=page, next_page_token=token)


def _matches(voice: audio_pb2.Voice, model: str, language: str) -> bool:
    if model and voice.models and model not in voice.models:
        return False
    if language and voice.languages:
        wanted = language.lower().split("-")[0]
        return any(lang.lower().split("-")[0] == wanted for lang in voice.languages)
    return True


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if text.startswith("o:") and text[2:].isdigit():
            return int(text[2:])
    except ValueError:
        pass
    raise invalid_field("page_token", "not a token from a previous response")


def call_context(model: str, remaining: float | None, request_id: str) -> CallContext:
    """The CallContext of one call with `remaining` seconds left (None: no deadline)."""
    return CallContext(
        model=model,
        deadline=None if remaining is None else time.monotonic() + remaining,
        request_id=request_id,
    )
