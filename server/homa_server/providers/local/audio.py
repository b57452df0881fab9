"""Offline speech for the `local` provider: the engines of stt.py / tts.py behind the audio protocols.

Models: `whisper-tiny.en` (also `tiny.en`) for Transcribe, Translate and StreamTranscribe (by
windows, see routing/audio_live.py); `piper` (also `en_US-joe-medium`) for Synthesize, with the
voice `en_US-joe-medium` (alias `joe`) in `wav` (default) or `pcm`. Both need the optional extra
`homa[local-audio]`; without it calls answer FAILED_PRECONDITION / EXTRA_NOT_INSTALLED. The engine
modules are imported inside the methods, so the server starts without the extra.

Settings `options`: `whisper_model_dir`, `whisper_threads` (default 1), `piper_voice_dir`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import Code, FieldViolation, GatewayError, Reason
from homa_server.providers.base import CallContext

if TYPE_CHECKING:
    from homa_server.providers.local.stt import LocalTranscriber, Transcript
    from homa_server.providers.local.tts import LocalSynthesizer

__all__ = ["STT_MODEL", "TTS_MODEL", "LocalAudio"]

STT_MODEL = "whisper-tiny.en"
TTS_MODEL = "piper"
_STT_ALIASES = frozenset({STT_MODEL, "tiny.en"})
_TTS_ALIASES = frozenset({TTS_MODEL, "en_us-joe-medium"})
_FORMATS = {
    audio_pb2.AUDIO_FORMAT_UNSPECIFIED: "wav",
    audio_pb2.AUDIO_FORMAT_WAV: "wav",
    audio_pb2.AUDIO_FORMAT_PCM: "pcm",
    audio_pb2.AUDIO_FORMAT_MP3: "mp3",
    audio_pb2.AUDIO_FORMAT_OPUS: "opus",
    audio_pb2.AUDIO_FORMAT_AAC: "aac",
    audio_pb2.AUDIO_FORMAT_FLAC: "flac",
}
_WORD = audio_pb2.TIMESTAMP_GRANULARITY_WORD
_SEGMENT = audio_pb2.TIMESTAMP_GRANULARITY_SEGMENT


def _unknown_model(provider: str, model: str, known: str) -> GatewayError:
    return GatewayError(
        f"the local provider has no {known} model {model!r}",
        Code.NOT_FOUND,
        Reason.MODEL_NOT_FOUND,
        metadata={"provider": provider, "model": model},
        field_violations=[FieldViolation("model", "unknown model")],
    )


def _response(transcript: Transcript, granularities: Sequence[int]) -> audio_pb2.TranscribeResponse:
    """A TranscribeResponse of `transcript` with the timestamps asked for."""
    out = audio_pb2.TranscribeResponse(
        text=transcript.text, language=transcript.language, duration_seconds=transcript.duration_s
    )
    for index, segment in enumerate(transcript.segments):
        if _SEGMENT in granularities:
            out.segments.add(
                index=index, start_seconds=segment.start_s, end_seconds=segment.end_s, text=segment.text
            )
        if _WORD in granularities:
            for word in segment.words:
                out.words.add(
                    word=word.word,
                    start_seconds=word.start_s,
                    end_seconds=word.end_s,
                    confidence=word.probability,
                )
    return out


class LocalAudio:
    """`TranscriptionProvider` and `SpeechProvider` on the local CPU (see the module docstring).
    The provider sets `_name` and calls `_init_audio(options)`."""

    _name: str
    _transcriber: LocalTranscriber | None
    _synthesizer: LocalSynthesizer | None
    _audio_options: Mapping[str, Any]

    def _init_audio(self, options: Mapping[str, Any]) -> None:
        self._audio_options = options
        self._transcriber = None
        self._synthesizer = None

    def _stt(self, model: str) -> LocalTranscriber:
        if model.lower() not in _STT_ALIASES:
            raise _unknown_model(self._name, model, "transcription")
        if self._transcriber is None:
            from homa_server.providers.local.stt import LocalTranscriber  # noqa: PLC0415 (optional extra)

            self._transcriber = LocalTranscriber(
                self._audio_options.get("whisper_model_dir"),
                int(self._audio_options.get("whisper_threads", 1)),
            )
        return self._transcriber

    def _tts(self, model: str) -> LocalSynthesizer:
        if model.lower() not in _TTS_ALIASES:
            raise _unknown_model(self._name, model, "speech")
        if self._synthesizer is None:
            from homa_server.providers.local.tts import LocalSynthesizer  # noqa: PLC0415 (optional extra)

            self._synthesizer = LocalSynthesizer(self._audio_options.get("piper_voice_dir"))
        return self._synthesizer

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        """Transcribe with whisper tiny.en. See `TranscriptionProvider.transcribe`."""
        granularities = list(config.timestamp_granularities)
        transcript = await self._stt(ctx.model).transcribe(
            audio, config.mime_type, config.language or None, False, _WORD in granularities
        )
        return _response(transcript, granularities)

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        """English text of English speech (tiny.en only knows English)."""
        granularities = list(config.timestamp_granularities)
        transcript = await self._stt(ctx.model).transcribe(
            audio, config.mime_type, None, True, _WORD in granularities
        )
        parsed = _response(transcript, granularities)
        return audio_pb2.TranslateResponse(
            text=parsed.text,
            source_language=parsed.language,
            duration_seconds=parsed.duration_seconds,
            segments=parsed.segments,
            words=parsed.words,
        )

    async def synthesize(
        self, request: audio_pb2.SynthesizeRequest, ctx: CallContext
    ) -> AsyncGenerator[audio_pb2.AudioChunk, None]:
        """Speak with piper; WAV (default) or PCM at the voice's sample rate."""
        engine = self._tts(ctx.model)
        audio_format = _FORMATS[request.format]
        speed = request.speed if request.HasField("speed") else 1.0
        chunks = engine.synthesize(request.input, request.voice, speed, audio_format)
        mime = ""
        try:
            async for data in chunks:
                if not mime:
                    rate = await asyncio.to_thread(engine.sample_rate)  # the voice is loaded by now
                    mime = "audio/wav" if audio_format == "wav" else f"audio/pcm;rate={rate}"
                yield audio_pb2.AudioChunk(data=data, mime_type=mime)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def list_voices(self) -> list[audio_pb2.Voice]:
        """The one piper voice (no I/O)."""
        from homa_server.providers.local.tts import LocalSynthesizer  # noqa: PLC0415 (optional extra)

        return [
            audio_pb2.Voice(
                voice_id=voice,
                display_name="Joe (US English, piper)",
                provider=self._name,
                models=[f"{self._name}/{TTS_MODEL}"],
                languages=["en-US"],
                description="Offline piper voice; wav or pcm output",
            )
            for voice in LocalSynthesizer().voices()
        ]
