"""Gemini transcription through generateContent against the spec-checked fake: the inline audio
part and instruction, text and duration (from AUDIO tokens) back, limits, translation."""

from __future__ import annotations

import base64

import pytest

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import TranscriptionProvider
from homa_server.providers.gemini import GeminiProvider
from homa_server.providers.gemini.audio import MAX_INLINE_AUDIO
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 (fixtures)
    FakeGemini,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_upstream_fixture,
    json_reply,
    response_json,
)

AUDIO = b"OggS" + bytes(range(200))
AUDIO_USAGE = {
    "promptTokenCount": 96,
    "candidatesTokenCount": 4,
    "totalTokenCount": 100,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 16}, {"modality": "AUDIO", "tokenCount": 80}],
}


async def test_transcribe_sends_inline_audio_and_reads_the_text(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    assert isinstance(gemini_provider, TranscriptionProvider)
    gemini_fake.enqueue(json_reply(response_json([{"text": " hello world \n"}], usage=AUDIO_USAGE)))
    config = audio_pb2.TranscriptionConfig(
        mime_type="audio/ogg", language="en", prompt="Homa", temperature=0.0
    )

    response = await gemini_provider.transcribe(config, AUDIO, gemini_ctx())

    assert (response.text, response.language) == ("hello world", "en")
    assert response.duration_seconds == pytest.approx(2.5)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (96, 4)
    body = gemini_fake.last.body
    audio_part, text_part = body["contents"][0]["parts"]
    assert audio_part["inlineData"] == {"mimeType": "audio/ogg", "data": base64.b64encode(AUDIO).decode()}
    assert text_part["text"].startswith("Transcribe the speech")
    assert "in en" in text_part["text"]
    assert "Homa" in text_part["text"]
    assert body["generationConfig"] == {"temperature": 0.0}
    assert gemini_fake.last.path.endswith("/models/gemini-2.5-flash:generateContent")


async def test_translate_asks_for_english(gemini_provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.enqueue(json_reply(response_json([{"text": "good morning"}], usage=AUDIO_USAGE)))
    config = audio_pb2.TranslationConfig(mime_type="audio/wav")
    response = await gemini_provider.translate(config, AUDIO, gemini_ctx())
    assert (response.text, response.duration_seconds) == ("good morning", pytest.approx(2.5))
    assert gemini_fake.last.body["contents"][0]["parts"][1]["text"].startswith("Translate the speech")


@pytest.mark.parametrize(
    ("config", "audio", "field"),
    [
        (
            audio_pb2.TranscriptionConfig(mime_type="audio/wav", timestamp_granularities=[1]),
            AUDIO,
            "config.timestamp_granularities",
        ),
        (audio_pb2.TranscriptionConfig(mime_type="audio/wav"), bytes(MAX_INLINE_AUDIO + 1), "audio_chunk"),
    ],
    ids=["timestamps", "too large"],
)
async def test_what_gemini_cannot_do_is_rejected_before_any_call(
    gemini_provider: GeminiProvider,
    gemini_fake: FakeGemini,
    config: audio_pb2.TranscriptionConfig,
    audio: bytes,
    field: str,
) -> None:
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.transcribe(config, audio, gemini_ctx())
    assert (caught.value.code, caught.value.reason) == (Code.INVALID_ARGUMENT, Reason.INVALID_REQUEST)
    assert caught.value.field_violations[0].field == field
    assert gemini_fake.requests == []


async def test_an_answer_without_candidates_is_a_protocol_error(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(
        json_reply(
            {
                "candidates": [],
                "usageMetadata": AUDIO_USAGE,
                "modelVersion": "gemini-2.5-flash",
                "responseId": "x",
            }
        )
    )
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.transcribe(
            audio_pb2.TranscriptionConfig(mime_type="audio/wav"), AUDIO, gemini_ctx()
        )
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
