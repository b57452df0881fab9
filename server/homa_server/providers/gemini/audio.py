"""Gemini speech-to-text: audio as an `inlineData` part of one `models/{model}:generateContent` call.

Gemini has no transcription endpoint; its multimodal models hear audio given inline. The request
holds the audio part, then one text part instructing the model (transcribe verbatim, or translate
into English), with the caller's `language` hint and `prompt` appended; `temperature` goes to
`generationConfig`. The answer's text parts are the transcript. Gemini returns no timestamps
(asking for them is INVALID_ARGUMENT) and no language; the duration is derived from the AUDIO
prompt tokens (Gemini counts 32 tokens per second of audio). Inline requests are capped at 20 MB,
so audio over `MAX_INLINE_AUDIO` (14 MiB, 18.7 MB as base64) is INVALID_ARGUMENT. Speech synthesis
is not offered here.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import invalid_field
from homa_server.providers.base import CallContext
from homa_server.providers.gemini.chat_response import check_prompt, usage_from
from homa_server.providers.gemini.error_mapping import protocol_error

__all__ = ["MAX_INLINE_AUDIO", "GeminiAudio", "build_transcription_body", "parse_transcript"]

MAX_INLINE_AUDIO = 14 * 1024 * 1024
AUDIO_TOKENS_PER_SECOND = 32.0
_TRANSCRIBE = "Transcribe the speech in this audio verbatim. Answer with the transcript only, no commentary."
_TRANSLATE = (
    "Translate the speech in this audio into English. Answer with the English text only, no commentary."
)


def build_transcription_body(
    config: audio_pb2.TranscriptionConfig | audio_pb2.TranslationConfig, audio: bytes, *, translate: bool
) -> dict[str, Any]:
    """The generateContent body of a transcription or translation.

    Raises:
        GatewayError: INVALID_ARGUMENT for timestamps or audio over `MAX_INLINE_AUDIO`.
    """
    if config.timestamp_granularities:
        raise invalid_field("config.timestamp_granularities", "Gemini returns no timestamps")
    if len(audio) > MAX_INLINE_AUDIO:
        raise invalid_field("audio_chunk", f"Gemini takes at most {MAX_INLINE_AUDIO} bytes of inline audio")
    instruction = _TRANSLATE if translate else _TRANSCRIBE
    if isinstance(config, audio_pb2.TranscriptionConfig) and config.language:
        instruction += f" The speech is in {config.language}."
    if config.prompt:
        instruction += f" Context (names, vocabulary): {config.prompt}"
    mime = config.mime_type.split(";", 1)[0].strip().lower()
    parts = [
        {"inlineData": {"mimeType": mime, "data": base64.b64encode(audio).decode()}},
        {"text": instruction},
    ]
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if config.HasField("temperature"):
        body["generationConfig"] = {"temperature": config.temperature}
    return body


def parse_transcript(provider: str, model: str, payload: Any) -> audio_pb2.TranscribeResponse:
    """The text, usage and duration (from AUDIO prompt tokens) of a generateContent answer.

    Raises:
        GatewayError: CONTENT_FILTERED for a blocked prompt; UPSTREAM_PROTOCOL_ERROR for an answer
            without a candidate.
    """
    if not isinstance(payload, dict):
        raise protocol_error(provider, "the generateContent answer is not an object")
    check_prompt(provider, model, payload)
    candidates = payload.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        raise protocol_error(provider, "the generateContent answer has no candidate")
    content = candidates[0].get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    out = audio_pb2.TranscribeResponse(text="".join(texts).strip())
    meta = payload.get("usageMetadata")
    if isinstance(meta, dict):
        out.usage.CopyFrom(usage_from(meta))
        for detail in meta.get("promptTokensDetails") or []:
            if isinstance(detail, dict) and detail.get("modality") == "AUDIO":
                out.duration_seconds = int(detail.get("tokenCount") or 0) / AUDIO_TOKENS_PER_SECOND
    return out


class GeminiAudio:
    """`TranscriptionProvider` for `GeminiProvider` (which provides `_name`, `_model_urls` and
    `_post_json`)."""

    _name: str
    _model_urls: Callable[[str], Any]  # GeminiProvider's per-model URLs (`.generate`)
    _post_json: Callable[[httpx.URL, bytes, CallContext], Awaitable[Any]]

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        """Transcription by generateContent. See `TranscriptionProvider.transcribe`."""
        body = orjson.dumps(build_transcription_body(config, audio, translate=False))
        payload = await self._post_json(self._model_urls(ctx.model).generate, body, ctx)
        response = parse_transcript(self._name, ctx.model, payload)
        response.language = config.language
        return response

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        """English translation by generateContent. See `TranscriptionProvider.translate`."""
        body = orjson.dumps(build_transcription_body(config, audio, translate=True))
        parsed = parse_transcript(
            self._name, ctx.model, await self._post_json(self._model_urls(ctx.model).generate, body, ctx)
        )
        return audio_pb2.TranslateResponse(
            text=parsed.text, duration_seconds=parsed.duration_seconds, usage=parsed.usage
        )
