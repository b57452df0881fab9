"""AudioService on the `local` provider: piper speech round-tripped through whisper tiny.en, and
live transcription by windows, all offline (needs the `local-audio` extra, installed in dev)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from grpc import StatusCode, aio

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.audio.v1 import audio_service_pb2_grpc as audio_grpc
from homa_server.app import start, stop
from tests.conftest import make_settings, status_details

SENTENCE = "The quick brown fox jumps over the lazy dog."
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.fixture
async def stub() -> AsyncIterator[audio_grpc.AudioServiceStub]:
    gateway, built = await start(make_settings(providers={"local": {"kind": "local"}}))
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield audio_grpc.AudioServiceStub(channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


async def _speak(stub: audio_grpc.AudioServiceStub, audio_format: int) -> tuple[bytes, str, float]:
    request = audio_pb2.SynthesizeRequest(
        model="local/piper", input=SENTENCE, voice="joe", format=audio_format
    )
    events = [event async for event in stub.Synthesize(request)]
    assert events[0].route.provider == "local"
    chunks = [e.audio for e in events[1:-1]]
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    return b"".join(c.data for c in chunks), chunks[0].mime_type, events[-1].finish.duration_seconds


async def test_local_speech_round_trip(stub: audio_grpc.AudioServiceStub) -> None:
    wav, mime, duration = await _speak(stub, audio_pb2.AUDIO_FORMAT_WAV)
    assert mime == "audio/wav"
    assert wav[:4] == b"RIFF"
    assert duration > 1.0

    config = audio_pb2.TranscriptionConfig(
        model="local/whisper-tiny.en", mime_type="audio/wav", timestamp_granularities=[1, 2]
    )
    requests = [audio_pb2.TranscribeRequest(config=config)]
    requests += [
        audio_pb2.TranscribeRequest(audio_chunk=wav[i : i + 65536]) for i in range(0, len(wav), 65536)
    ]
    response = await stub.Transcribe(iter(requests))
    assert _words(response.text) == WORDS
    assert response.language == "en"
    assert response.duration_seconds == pytest.approx(duration, abs=0.05)
    assert [_words(w.word)[0] for w in response.words] == WORDS
    assert response.segments


async def test_local_pcm_streamed_live_gives_a_final_transcript(stub: audio_grpc.AudioServiceStub) -> None:
    pcm, mime, duration = await _speak(stub, audio_pb2.AUDIO_FORMAT_PCM)
    rate = int(mime.rpartition("rate=")[2])
    assert duration == pytest.approx(len(pcm) / 2 / rate)
    config = audio_pb2.StreamTranscriptionConfig(
        model="local/whisper-tiny.en", encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate
    )
    step = rate // 5 * 2  # 200 ms
    requests = [audio_pb2.StreamTranscribeRequest(config=config)]
    requests += [
        audio_pb2.StreamTranscribeRequest(audio_chunk=pcm[i : i + step]) for i in range(0, len(pcm), step)
    ]
    events = [event async for event in stub.StreamTranscribe(iter(requests))]
    results = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert results[-1].is_final
    assert not any(r.is_final for r in results[:-1])
    assert _words(events[-1].finish.text) == WORDS
    assert events[-1].finish.duration_seconds == pytest.approx(duration)


async def test_local_voices_and_unsupported_format(stub: audio_grpc.AudioServiceStub) -> None:
    voices = await stub.ListVoices(audio_pb2.ListVoicesRequest(language="en"))
    assert [(v.provider, v.voice_id) for v in voices.voices] == [("local", "en_US-joe-medium")]
    request = audio_pb2.SynthesizeRequest(
        model="local/piper", input="Hi", voice="joe", format=audio_pb2.AUDIO_FORMAT_MP3
    )
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stub.Synthesize(request):
            pass
    assert caught.value.code() == StatusCode.FAILED_PRECONDITION
    assert status_details(caught.value)["ErrorInfo"].reason == "CAPABILITY_NOT_SUPPORTED"
