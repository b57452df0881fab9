"""OpenAI audio: `POST /audio/transcriptions`, `/audio/translations` (multipart) and `/audio/speech`.

Shared by `OpenAIProvider` and `AzureOpenAIProvider` (same wire, other URLs and auth) through
`OpenAIAudio`, a mixin that needs `_name`, `_client`, `_timeouts` and the three hooks below.

Transcription: whisper models are asked for `verbose_json` (language, duration, segments and, when
requested, words); the gpt-4o transcribe models accept only `json` (text and usage), so a request
for timestamps on them is INVALID_ARGUMENT before any call. `extra_body` fields are sent as form
fields first, so fields the adapter sets win. Speech: the JSON body of `CreateSpeechRequest`; the
binary answer is passed through as it arrives (`stream_format: audio`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx
import orjson
from google.protobuf import json_format

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import GatewayError, invalid_field
from homa_server.providers._errors import protocol_error
from homa_server.providers._http import TimeoutPolicy, UpstreamClient, parse_json, post_within_deadline
from homa_server.providers._streaming import open_stream
from homa_server.providers.base import CallContext
from homa_server.providers.openai.error_mapping import error_from_response

__all__ = [
    "OPENAI_VOICES",
    "OpenAIAudio",
    "OpenAIProviderAudio",
    "build_speech_body",
    "build_transcription_form",
    "multipart_body",
    "parse_transcription",
    "speech_mime_type",
]

#: Built-in voices of the OpenAI speech models.
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
    "shimmer", "verse",
)  # fmt: skip
_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")

_FORMATS = {
    audio_pb2.AUDIO_FORMAT_UNSPECIFIED: "mp3",
    audio_pb2.AUDIO_FORMAT_MP3: "mp3",
    audio_pb2.AUDIO_FORMAT_WAV: "wav",
    audio_pb2.AUDIO_FORMAT_OPUS: "opus",
    audio_pb2.AUDIO_FORMAT_PCM: "pcm",
    audio_pb2.AUDIO_FORMAT_AAC: "aac",
    audio_pb2.AUDIO_FORMAT_FLAC: "flac",
}
_MIME = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "opus": "audio/ogg",
    "pcm": "audio/pcm;rate=24000",
    "aac": "audio/aac",
    "flac": "audio/flac",
}
_EXTENSIONS = {
    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/mpga": "mpga", "audio/mp4": "mp4",
    "audio/m4a": "m4a", "audio/x-m4a": "m4a", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/wave": "wav", "audio/webm": "webm", "audio/ogg": "ogg", "audio/flac": "flac",
    "audio/x-flac": "flac", "video/mp4": "mp4", "video/webm": "webm",
}  # fmt: skip
_GRANULARITY = {
    audio_pb2.TIMESTAMP_GRANULARITY_SEGMENT: "segment",
    audio_pb2.TIMESTAMP_GRANULARITY_WORD: "word",
}


def multipart_body(fields: Sequence[tuple[str, str]], file: tuple[str, str, bytes]) -> tuple[bytes, str]:
    """A `multipart/form-data` body of text `fields` and one file `(filename, mime_type, data)`;
    returns the body and its Content-Type header value."""
    boundary = f"homa-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    filename, mime_type, data = file
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {mime_type}\r\n\r\n".encode()
    )
    parts.append(data)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _is_whisper(model: str) -> bool:
    return "whisper" in model.lower()


def build_transcription_form(
    config: audio_pb2.TranscriptionConfig | audio_pb2.TranslationConfig,
    model: str,
    audio: bytes,
    *,
    translate: bool,
) -> tuple[bytes, str]:
    """The multipart body of a transcription or translation request and its Content-Type.

    Raises:
        GatewayError: INVALID_ARGUMENT for timestamps or diarisation a non-whisper model lacks.
    """
    fields: list[tuple[str, str]] = []
    if config.HasField("extra_body"):
        for key, value in json_format.MessageToDict(config.extra_body).items():
            fields.append((key, value if isinstance(value, str) else orjson.dumps(value).decode()))
    granularities = [_GRANULARITY[g] for g in dict.fromkeys(config.timestamp_granularities)]
    whisper = _is_whisper(model)
    if granularities and not whisper:
        raise invalid_field("config.timestamp_granularities", f"{model} returns no timestamps; use whisper-1")
    own: list[tuple[str, str]] = [("model", model)]
    own.append(("response_format", "verbose_json" if whisper else "json"))
    own.extend(("timestamp_granularities[]", g) for g in granularities)
    if config.prompt:
        own.append(("prompt", config.prompt))
    if config.HasField("temperature"):
        own.append(("temperature", repr(config.temperature)))
    if not translate and isinstance(config, audio_pb2.TranscriptionConfig) and config.language:
        own.append(("language", config.language.split("-")[0].lower()))
    names = {name for name, _ in own}
    fields = [f for f in fields if f[0] not in names and f[0] != "file"] + own
    mime = config.mime_type.split(";", 1)[0].strip().lower()
    return multipart_body(fields, (f"audio.{_EXTENSIONS.get(mime, 'bin')}", mime, audio))


def _only_requested(
    response: audio_pb2.TranscribeResponse, granularities: Sequence[int]
) -> audio_pb2.TranscribeResponse:
    """`response` without the segments or words that were not asked for (verbose_json always
    carries segments)."""
    if audio_pb2.TIMESTAMP_GRANULARITY_SEGMENT not in granularities:
        del response.segments[:]
    if audio_pb2.TIMESTAMP_GRANULARITY_WORD not in granularities:
        del response.words[:]
    return response


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_transcription(provider: str, payload: Any) -> audio_pb2.TranscribeResponse:
    """A `CreateTranscriptionResponseJson` or `...VerboseJson` as a TranscribeResponse.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the body has no string `text`.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        raise protocol_error(provider, "the transcription has no `text`")
    out = audio_pb2.TranscribeResponse(text=payload["text"])
    if isinstance(payload.get("language"), str):
        out.language = _language_code(payload["language"])
    out.duration_seconds = _number(payload.get("duration")) or 0.0
    for index, seg in enumerate(payload.get("segments") or []):
        if not isinstance(seg, dict):
            raise protocol_error(provider, "a transcription segment is not an object")
        item = out.segments.add(
            index=index,
            start_seconds=_number(seg.get("start")) or 0.0,
            end_seconds=_number(seg.get("end")) or 0.0,
            text=str(seg.get("text", "")).strip(),
        )
        if (logprob := _number(seg.get("avg_logprob"))) is not None:
            item.avg_logprob = logprob
        if (no_speech := _number(seg.get("no_speech_prob"))) is not None:
            item.no_speech_prob = no_speech
    for word in payload.get("words") or []:
        if isinstance(word, dict):
            out.words.add(
                word=str(word.get("word", "")),
                start_seconds=_number(word.get("start")) or 0.0,
                end_seconds=_number(word.get("end")) or 0.0,
            )
    usage = payload.get("usage")
    if isinstance(usage, dict):
        if usage.get("type") == "duration" and not out.duration_seconds:
            out.duration_seconds = _number(usage.get("seconds")) or 0.0
        if usage.get("type") == "tokens":
            out.usage.input_tokens = int(usage.get("input_tokens") or 0)
            out.usage.output_tokens = int(usage.get("output_tokens") or 0)
            out.usage.total_tokens = int(usage.get("total_tokens") or 0)
    return out


_LANGUAGES = {
    "english": "en", "spanish": "es", "french": "fr", "german": "de", "italian": "it",
    "portuguese": "pt", "dutch": "nl", "japanese": "ja", "chinese": "zh", "korean": "ko",
    "russian": "ru", "arabic": "ar", "hindi": "hi", "polish": "pl", "turkish": "tr",
}  # fmt: skip


def _language_code(name: str) -> str:
    """Whisper's verbose_json names languages in English ("english"); ISO-639-1 where known."""
    return _LANGUAGES.get(name.lower(), name)


def build_speech_body(request: audio_pb2.SynthesizeRequest, model: str) -> dict[str, Any]:
    """The JSON body of `POST /audio/speech` (`CreateSpeechRequest`).

    Raises:
        GatewayError: INVALID_ARGUMENT for a format OpenAI does not produce.
    """
    body: dict[str, Any] = {}
    if request.HasField("extra_body"):
        body.update(json_format.MessageToDict(request.extra_body))
    body["model"] = model
    body["input"] = request.input
    body["voice"] = request.voice
    body["response_format"] = _FORMATS[request.format]
    if request.HasField("speed"):
        body["speed"] = request.speed
    if request.instructions:
        body["instructions"] = request.instructions
    return body


def speech_mime_type(audio_format: audio_pb2.AudioFormat.ValueType) -> str:
    """The IANA type of OpenAI speech in `audio_format` (PCM is 24 kHz)."""
    return _MIME[_FORMATS.get(audio_format, "mp3")]


class _NeverError(Exception):
    """A raw audio body has no framing that can be truncated."""


async def _raw(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    async for chunk in chunks:
        if chunk:
            yield chunk


class OpenAIAudio:
    """`TranscriptionProvider` and `SpeechProvider` over the OpenAI audio wire.

    The class using it sets `_name`, `_client`, `_timeouts` and implements `_audio_url(operation,
    model)` (operation: "transcriptions", "translations" or "speech"), `_audio_headers(ctx)` and
    `_audio_error(response, model)`.
    """

    _name: str
    _client: UpstreamClient
    _timeouts: TimeoutPolicy

    def _audio_url(self, operation: str, model: str) -> httpx.URL:
        raise NotImplementedError

    def _audio_headers(self, ctx: CallContext) -> dict[str, str]:
        raise NotImplementedError

    def _audio_error(self, response: httpx.Response, model: str) -> GatewayError:
        raise NotImplementedError

    def _voice_models(self) -> list[str]:
        """`Voice.models`: "provider/model" of the speech models (empty: any model of the provider)."""
        return [f"{self._name}/{m}" for m in _TTS_MODELS]

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        """Transcription via `POST /audio/transcriptions`. See `TranscriptionProvider.transcribe`."""
        body, content_type = build_transcription_form(config, ctx.model, audio, translate=False)
        payload = await self._post_form("transcriptions", body, content_type, ctx)
        response = _only_requested(parse_transcription(self._name, payload), config.timestamp_granularities)
        if not response.language and config.language:
            response.language = config.language
        return response

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        """English translation via `POST /audio/translations`. See `TranscriptionProvider.translate`."""
        body, content_type = build_transcription_form(config, ctx.model, audio, translate=True)
        payload = await self._post_form("translations", body, content_type, ctx)
        parsed = _only_requested(parse_transcription(self._name, payload), config.timestamp_granularities)
        return audio_pb2.TranslateResponse(
            text=parsed.text,
            source_language=parsed.language,
            duration_seconds=parsed.duration_seconds,
            segments=parsed.segments,
            words=parsed.words,
            usage=parsed.usage,
        )

    async def synthesize(
        self, request: audio_pb2.SynthesizeRequest, ctx: CallContext
    ) -> AsyncGenerator[audio_pb2.AudioChunk, None]:
        """Speech via `POST /audio/speech`, passed through as the bytes arrive.

        Closing the generator closes the upstream response at once.
        """
        body = orjson.dumps(build_speech_body(request, ctx.model))
        mime = speech_mime_type(request.format)
        headers = {**self._audio_headers(ctx), "Content-Type": "application/json"}
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST",
                self._audio_url("speech", ctx.model),
                content=body,
                headers=headers,
                timeout=self._timeouts.for_call(ctx),
            ),
            media_type="",
            http_error=lambda response: self._audio_error(response, ctx.model),
            parse=_raw,
            truncated=_NeverError,
        ) as stream:
            if stream.first is None:
                raise protocol_error(self._name, "the speech response is empty")
            yield audio_pb2.AudioChunk(data=stream.first, mime_type=mime)
            async for data in stream.events:
                yield audio_pb2.AudioChunk(data=data, mime_type=mime)

    async def list_voices(self) -> list[audio_pb2.Voice]:
        """The built-in OpenAI voices (no HTTP call: the API has no voice listing)."""
        models = self._voice_models()
        return [
            audio_pb2.Voice(voice_id=v, display_name=v.capitalize(), provider=self._name, models=models)
            for v in OPENAI_VOICES
        ]

    async def _post_form(self, operation: str, body: bytes, content_type: str, ctx: CallContext) -> Any:
        headers = {**self._audio_headers(ctx), "Content-Type": content_type}
        response = await post_within_deadline(
            self._client,
            self._name,
            self._audio_url(operation, ctx.model),
            ctx,
            self._timeouts,
            content=body,
            headers=headers,
        )
        if response.status_code >= 300:
            raise self._audio_error(response, ctx.model)
        return parse_json(self._name, response.content)


class OpenAIProviderAudio(OpenAIAudio):
    """The `OpenAIAudio` hooks for api.openai.com and compatible servers: `{base}/audio/<operation>`,
    the client's default auth headers, OpenAI's error mapping. The provider sets `_audio_base`."""

    _audio_base: str

    def _audio_url(self, operation: str, model: str) -> httpx.URL:
        return httpx.URL(f"{self._audio_base}/audio/{operation}")

    def _audio_headers(self, ctx: CallContext) -> dict[str, str]:
        return {"X-Client-Request-Id": ctx.request_id} if ctx.request_id else {}

    def _audio_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name, model, response.status_code, response.headers, response.content
        )
