"""AudioService end to end: OpenAI and Azure fakes (spec-checked forms and bodies) behind a real
server; validation with details; windowed live transcription; cancel reaching the upstream; voices;
usage records with audio seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from grpc import StatusCode, aio

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.audio.v1 import audio_service_pb2_grpc as audio_grpc
from homa.type.v1 import usage_pb2
from homa_server.app import Gateway, start, stop
from homa_server.providers.base import CallContext
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.settings import ProviderSettings
from homa_server.store.tables import usage_records
from tests.conftest import make_settings, status_details
from tests.providers.fakes.openai_audio import SPEECH_FRAMES, FakeOpenAIAudio, speech_reply
from tests.providers.fakes.openai_upstream import error_reply, json_reply

AUDIO = b"ID3\x04" + bytes(range(256)) * 10
SEGMENT = audio_pb2.TIMESTAMP_GRANULARITY_SEGMENT
WORD = audio_pb2.TIMESTAMP_GRANULARITY_WORD


class ScriptedTranscriber:
    """A TranscriptionProvider (no native streaming) that reports what it was sent."""

    kind = "scripted_stt"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.uploads: list[tuple[str, bytes]] = []

    async def aclose(self) -> None:
        return None

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        self.uploads.append((config.mime_type, audio))
        return audio_pb2.TranscribeResponse(text=f"heard {len(audio)}", language="en")

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        return audio_pb2.TranslateResponse(text="translated")


class NativeStreamer:
    """A StreamingTranscriptionProvider: one final result per audio chunk, then usage."""

    kind = "native_stt"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name

    async def aclose(self) -> None:
        return None

    async def transcribe(
        self, config: audio_pb2.TranscriptionConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranscribeResponse:
        raise AssertionError("the native stream must be used")

    async def translate(
        self, config: audio_pb2.TranslationConfig, audio: bytes, ctx: CallContext
    ) -> audio_pb2.TranslateResponse:
        raise AssertionError("not used")

    async def stream_transcribe(
        self, config: audio_pb2.StreamTranscriptionConfig, audio: AsyncIterator[bytes], ctx: CallContext
    ) -> AsyncIterator[audio_pb2.StreamTranscribeResponse]:
        index = 0
        async for chunk in audio:
            result = audio_pb2.TranscriptResult(
                segment_index=index, text=f"chunk {len(chunk)}", is_final=True
            )
            yield audio_pb2.StreamTranscribeResponse(result=result)
            index += 1
        yield audio_pb2.StreamTranscribeResponse(usage=usage_pb2.Usage(input_tokens=7, total_tokens=7))


@dataclass
class Served:
    stub: audio_grpc.AudioServiceStub
    gateway: Gateway
    fake: FakeOpenAIAudio
    scripted: ScriptedTranscriber


@pytest.fixture(scope="module")
def audio_upstream() -> Iterator[FakeOpenAIAudio]:
    fake = FakeOpenAIAudio().start()
    yield fake
    fake.stop()


@pytest.fixture
def audio_fake(audio_upstream: FakeOpenAIAudio) -> Iterator[FakeOpenAIAudio]:
    audio_upstream.reset()
    yield audio_upstream
    try:
        assert audio_upstream.validation_errors == [], "requests violated the OpenAI spec"
        assert audio_upstream.response_errors == [], "the fake sent replies that violate the spec"
    finally:
        audio_upstream.reset()


@pytest.fixture
async def served(audio_fake: FakeOpenAIAudio) -> AsyncIterator[Served]:
    settings = make_settings(
        providers={
            "mock": {"kind": "mock"},
            "openai": {"kind": "openai", "base_url": audio_fake.base_url, "api_key": "sk-test-audio"},
            "azure": {
                "kind": "azure_openai",
                "base_url": audio_fake.azure_base_url,
                "api_key": "azure-key",
                "options": {
                    "api_version": "2025-04-01-preview",
                    "deployments": {"whisper": "whisper-dep", "tts": "tts-dep"},
                },
            },
            "scripted": {"kind": "scripted_stt"},
            "native": {"kind": "native_stt"},
        }
    )
    gateway, built = await start(
        settings, {**BUILTIN_KINDS, "scripted_stt": ScriptedTranscriber, "native_stt": NativeStreamer}
    )
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    scripted = gateway.registry.get("scripted")
    assert isinstance(scripted, ScriptedTranscriber)
    try:
        yield Served(audio_grpc.AudioServiceStub(channel), gateway, audio_fake, scripted)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _upload(
    config: Any, audio: bytes, kind: type[Any] = audio_pb2.TranscribeRequest, size: int = 1000
) -> list[Any]:
    return [kind(config=config), *(kind(audio_chunk=audio[i : i + size]) for i in range(0, len(audio), size))]


async def _rows(gateway: Gateway, method: str) -> list[Any]:
    assert gateway.outbox is not None
    await gateway.outbox.flush()
    async with gateway.db.session() as session:
        result = await session.execute(sa.select(usage_records).where(usage_records.c.method == method))
        return [row._mapping for row in result.all()]


def _violation(error: aio.AioRpcError) -> tuple[StatusCode, str]:
    assert error.code() == StatusCode.INVALID_ARGUMENT, error.details()
    violations = status_details(error)["BadRequest"].field_violations
    return error.code(), violations[0].field


# --------------------------------------------------------------------------------------------
# Transcribe / Translate
# --------------------------------------------------------------------------------------------


async def test_transcribe_whisper_sends_a_spec_form_and_maps_the_verbose_answer(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(
        model="openai/whisper-1",
        mime_type="audio/mpeg",
        language="en-US",
        prompt="Greetings",
        temperature=0.2,
        timestamp_granularities=[SEGMENT, WORD],
    )
    response = await served.stub.Transcribe(iter(_upload(config, AUDIO)))

    assert response.text == "hello world"
    assert (response.language, response.duration_seconds) == ("en", 2.5)
    assert [(s.index, s.text, s.end_seconds) for s in response.segments] == [(0, "hello world", 2.5)]
    assert response.segments[0].avg_logprob == -0.25
    assert [(w.word, w.start_seconds) for w in response.words] == [("hello", 0.1), ("world", 0.7)]
    assert (response.route.provider, response.route.model) == ("openai", "whisper-1")
    form = served.fake.last.body
    assert form["file"] == ("audio.mp3", "audio/mpeg", AUDIO)
    assert form["model"] == "whisper-1"
    assert form["response_format"] == "verbose_json"
    assert form["timestamp_granularities"] == ["segment", "word"]
    assert (form["language"], form["prompt"], form["temperature"]) == ("en", "Greetings", "0.2")
    rows = await _rows(served.gateway, "audio.Transcribe")
    assert [(r["model"], r["status"], r["audio_seconds"]) for r in rows] == [
        ("openai/whisper-1", "completed", 2.5)
    ]


async def test_transcribe_gpt4o_uses_json_and_the_duration_usage(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(model="openai/gpt-4o-transcribe", mime_type="audio/wav")
    response = await served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert (response.text, response.duration_seconds) == ("hello world", 3.0)
    assert served.fake.last.body["response_format"] == "json"


async def test_timestamps_on_a_json_only_model_are_rejected_before_any_call(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(
        model="openai/gpt-4o-transcribe", mime_type="audio/wav", timestamp_granularities=[WORD]
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert _violation(caught.value)[1] == "config.timestamp_granularities"
    assert served.fake.requests == []


async def test_translate_goes_to_translations(served: Served) -> None:
    config = audio_pb2.TranslationConfig(model="openai/whisper-1", mime_type="audio/ogg", prompt="Hi")
    response = await served.stub.Translate(iter(_upload(config, AUDIO, audio_pb2.TranslateRequest)))
    assert (response.text, response.source_language, response.duration_seconds) == ("hello world", "en", 2.5)
    assert served.fake.last.path == "/v1/audio/translations"
    assert list(response.segments) == []  # verbose_json carries them, but none were asked for
    assert "language" not in served.fake.last.body


async def test_azure_transcribes_on_the_deployment_url(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(model="azure/whisper", mime_type="audio/webm")
    response = await served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert response.text == "hello world"
    request = served.fake.last
    assert request.path == "/openai/deployments/whisper-dep/audio/transcriptions"
    assert request.query == {"api-version": "2025-04-01-preview"}
    assert request.headers["api-key"] == "azure-key"


async def test_upstream_errors_are_mapped(served: Served) -> None:
    served.fake.enqueue(error_reply(429, "Rate limit reached", code="rate_limit_exceeded"))
    config = audio_pb2.TranscriptionConfig(model="openai/whisper-1", mime_type="audio/wav")
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert caught.value.code() == StatusCode.RESOURCE_EXHAUSTED
    rows = await _rows(served.gateway, "audio.Transcribe")
    assert [(r["status"], r["error_reason"]) for r in rows] == [("failed", "UPSTREAM_RATE_LIMITED")]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _bad_uploads() -> list[tuple[str, list[Any], str]]:
    ok = audio_pb2.TranscriptionConfig(model="openai/whisper-1", mime_type="audio/wav")
    chunk = audio_pb2.TranscribeRequest
    return [
        ("audio first", [chunk(audio_chunk=b"x"), chunk(config=ok)], "config"),
        ("no messages", [], "config"),
        ("empty audio", [chunk(config=ok)], "audio_chunk"),
        ("empty chunks", [chunk(config=ok), chunk(audio_chunk=b"")], "audio_chunk"),
        ("two configs", [chunk(config=ok), chunk(config=ok)], "config"),
        (
            "no mime type",
            [chunk(config=audio_pb2.TranscriptionConfig(model="openai/whisper-1")), chunk(audio_chunk=b"x")],
            "config.mime_type",
        ),
        (
            "unsupported format",
            [
                chunk(
                    config=audio_pb2.TranscriptionConfig(model="openai/whisper-1", mime_type="audio/x-aiff")
                ),
                chunk(audio_chunk=b"x"),
            ],
            "config.mime_type",
        ),
        (
            "temperature",
            [
                chunk(
                    config=audio_pb2.TranscriptionConfig(
                        model="openai/whisper-1", mime_type="audio/wav", temperature=1.5
                    )
                ),
                chunk(audio_chunk=b"x"),
            ],
            "config.temperature",
        ),
        ("chunk too big", [chunk(config=ok), chunk(audio_chunk=bytes(2 * 1024 * 1024))], "audio_chunk"),
    ]


@pytest.mark.parametrize(("case", "messages", "field"), _bad_uploads(), ids=[c[0] for c in _bad_uploads()])
async def test_invalid_uploads_are_rejected_with_the_field(
    served: Served, case: str, messages: list[Any], field: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.Transcribe(iter(messages))
    assert _violation(caught.value) == (StatusCode.INVALID_ARGUMENT, field)
    assert served.fake.requests == []


async def test_too_large_upload_is_rejected(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(model="openai/whisper-1", mime_type="audio/wav")
    megabyte = bytes(1024 * 1024)
    messages = [audio_pb2.TranscribeRequest(config=config)]
    messages += [audio_pb2.TranscribeRequest(audio_chunk=megabyte) for _ in range(26)]
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.Transcribe(iter(messages))
    assert _violation(caught.value)[1] == "audio_chunk"
    assert "exceeds" in caught.value.details()
    assert served.fake.requests == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input": "", "voice": "alloy"}, "input"),
        ({"input": "x" * 4097, "voice": "alloy"}, "input"),
        ({"input": "hi"}, "voice"),
        ({"input": "hi", "voice": "alloy", "speed": 5.0}, "speed"),
        ({"input": "hi", "voice": "alloy", "format": 42}, "format"),
    ],
)
async def test_invalid_synthesize_requests(served: Served, fields: dict[str, Any], field: str) -> None:
    call = served.stub.Synthesize(audio_pb2.SynthesizeRequest(model="openai/tts-1", **fields))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert _violation(caught.value)[1] == field
    assert served.fake.requests == []


async def test_a_provider_without_audio_answers_failed_precondition(served: Served) -> None:
    config = audio_pb2.TranscriptionConfig(model="mock/echo", mime_type="audio/wav")
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert caught.value.code() == StatusCode.FAILED_PRECONDITION
    info = status_details(caught.value)["ErrorInfo"]
    assert (info.reason, info.metadata["capability"]) == ("CAPABILITY_NOT_SUPPORTED", "transcription")


# --------------------------------------------------------------------------------------------
# Synthesize
# --------------------------------------------------------------------------------------------


async def test_synthesize_streams_route_chunks_and_finish(served: Served) -> None:
    request = audio_pb2.SynthesizeRequest(
        model="openai/gpt-4o-mini-tts", input="Hello there", voice="coral", speed=1.25, instructions="Warm"
    )
    events = [event async for event in served.stub.Synthesize(request)]

    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["route", *["audio"] * (len(events) - 2), "finish"]
    chunks = [e.audio for e in events[1:-1]]
    assert b"".join(c.data for c in chunks) == b"".join(SPEECH_FRAMES)
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert {c.mime_type for c in chunks} == {"audio/mpeg"}
    finish = events[-1].finish
    assert (finish.chunk_count, finish.total_bytes) == (len(chunks), sum(map(len, SPEECH_FRAMES)))
    assert finish.input_characters == 11
    assert not finish.HasField("duration_seconds")
    body = served.fake.last.body
    assert body == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there",
        "voice": "coral",
        "response_format": "mp3",
        "speed": 1.25,
        "instructions": "Warm",
    }


async def test_pcm_speech_has_a_duration_in_the_finish_and_usage(served: Served) -> None:
    served.fake.enqueue(speech_reply([bytes(24000), bytes(24000)], content_type="application/octet-stream"))
    request = audio_pb2.SynthesizeRequest(
        model="azure/tts", input="Hi", voice="alloy", format=audio_pb2.AUDIO_FORMAT_PCM
    )
    events = [event async for event in served.stub.Synthesize(request)]
    assert events[1].audio.mime_type == "audio/pcm;rate=24000"
    assert events[-1].finish.duration_seconds == pytest.approx(1.0)
    assert served.fake.last.path == "/openai/deployments/tts-dep/audio/speech"
    rows = await _rows(served.gateway, "audio.Synthesize")
    assert [(r["model"], r["audio_seconds"]) for r in rows] == [("azure/tts", pytest.approx(1.0))]


async def test_speech_errors_are_mapped(served: Served) -> None:
    served.fake.enqueue(error_reply(400, "Invalid voice", param="voice"))
    call = served.stub.Synthesize(audio_pb2.SynthesizeRequest(model="openai/tts-1", input="Hi", voice="zzz"))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == StatusCode.INVALID_ARGUMENT
    rows = await _rows(served.gateway, "audio.Synthesize")
    assert [r["status"] for r in rows] == ["failed"]


async def test_cancelling_synthesize_disconnects_the_upstream(served: Served) -> None:
    served.fake.enqueue(speech_reply([bytes(100)] * 50, delay=0.05))
    call = served.stub.Synthesize(
        audio_pb2.SynthesizeRequest(model="openai/tts-1", input="Long", voice="echo")
    )
    assert (await call.read()).WhichOneof("event") == "route"
    assert (await call.read()).WhichOneof("event") == "audio"
    call.cancel()
    disconnect = await served.fake.wait_for_disconnect(within=2.0)
    assert disconnect.path == "/v1/audio/speech"
    assert disconnect.frames_sent < 50


async def test_cancelling_transcribe_disconnects_the_upstream(served: Served) -> None:
    slow = json_reply({"text": "late"})
    slow.delay = 5.0
    served.fake.enqueue(slow)
    config = audio_pb2.TranscriptionConfig(model="openai/gpt-4o-transcribe", mime_type="audio/wav")
    call = served.stub.Transcribe(iter(_upload(config, AUDIO)))
    assert await asyncio.to_thread(served.fake.audio_received.wait, 5.0)  # the upload is upstream
    call.cancel()
    disconnect = await served.fake.wait_for_disconnect(within=2.0)
    assert disconnect.path == "/v1/audio/transcriptions"


# --------------------------------------------------------------------------------------------
# StreamTranscribe
# --------------------------------------------------------------------------------------------


def _live_config(model: str, **fields: Any) -> audio_pb2.StreamTranscribeRequest:
    defaults: dict[str, Any] = {"encoding": audio_pb2.AUDIO_ENCODING_LINEAR16, "sample_rate_hertz": 8000}
    return audio_pb2.StreamTranscribeRequest(
        config=audio_pb2.StreamTranscriptionConfig(model=model, **{**defaults, **fields})
    )


def _chunk(size: int) -> audio_pb2.StreamTranscribeRequest:
    return audio_pb2.StreamTranscribeRequest(audio_chunk=bytes(size))


async def test_partials_arrive_while_audio_is_still_being_sent(served: Served) -> None:
    call = served.stub.StreamTranscribe()
    await call.write(_live_config("scripted/any"))
    assert (await call.read()).route.provider == "scripted"
    await call.write(_chunk(16000))
    await call.write(_chunk(16000))  # 2 s of 8 kHz LINEAR16: one window
    partial = (await call.read()).result
    assert (partial.is_final, partial.segment_index, partial.text) == (False, 0, "heard 32044")
    assert partial.end_seconds == pytest.approx(2.0)
    await call.write(_chunk(8000))
    await call.done_writing()
    rest = []
    while (event := await call.read()) is not aio.EOF:
        rest.append(event)
    final = rest[-2].result
    assert (final.is_final, final.text, final.end_seconds) == (True, "heard 40044", pytest.approx(2.5))
    assert rest[-1].finish.text == "heard 40044"
    assert rest[-1].finish.duration_seconds == pytest.approx(2.5)
    assert await call.code() == StatusCode.OK
    mime, first = served.scripted.uploads[0]
    assert mime == "audio/wav"
    assert first[:4] == b"RIFF"
    assert first[8:16] == b"WAVEfmt "
    assert int.from_bytes(first[24:28], "little") == 8000
    rows = await _rows(served.gateway, "audio.StreamTranscribe")
    assert [(r["status"], r["audio_seconds"]) for r in rows] == [("completed", pytest.approx(2.5))]


async def test_long_audio_is_cut_into_final_utterances(served: Served) -> None:
    requests = [_live_config("scripted/any", interim_results=False)]
    requests += [_chunk(16000) for _ in range(32)]  # 32 s; utterances end after 30 s
    events = [event async for event in served.stub.StreamTranscribe(iter(requests))]
    results = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert [(r.segment_index, r.is_final) for r in results] == [(0, True), (1, True)]
    assert [(r.start_seconds, r.end_seconds) for r in results] == [(0.0, 30.0), (30.0, 32.0)]
    assert events[-1].finish.text == "heard 480044 heard 32044"


async def test_compressed_live_audio_through_openai(served: Served) -> None:
    requests = [
        _live_config("openai/whisper-1", encoding=audio_pb2.AUDIO_ENCODING_OGG_OPUS, interim_results=False)
    ]
    requests += [audio_pb2.StreamTranscribeRequest(audio_chunk=AUDIO)]
    events = [event async for event in served.stub.StreamTranscribe(iter(requests))]
    assert [e.WhichOneof("event") for e in events] == ["route", "result", "finish"]
    assert events[1].result.is_final
    assert events[1].result.text == "hello world"
    assert events[-1].finish.duration_seconds == 2.5
    assert served.fake.last.body["file"] == ("audio.ogg", "audio/ogg", AUDIO)


async def test_native_streaming_providers_get_the_chunks_as_they_come(served: Served) -> None:
    requests = [_live_config("native/any"), _chunk(320), _chunk(640)]
    events = [event async for event in served.stub.StreamTranscribe(iter(requests))]
    assert [e.WhichOneof("event") for e in events] == ["route", "result", "result", "usage", "finish"]
    finish = events[-1].finish
    assert (finish.text, finish.usage.input_tokens) == ("chunk 320 chunk 640", 7)
    assert finish.duration_seconds == pytest.approx(960 / 16000)


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        ([_chunk(10)], "config"),
        ([_live_config("scripted/any", encoding=0)], "config.encoding"),
        ([_live_config("scripted/any", sample_rate_hertz=None)], "config.sample_rate_hertz"),
        ([_live_config("scripted/any")], "audio_chunk"),
        ([_live_config("scripted/any"), _chunk(10), _live_config("scripted/any")], "config"),
    ],
    ids=["audio first", "no encoding", "no sample rate", "no audio", "second config"],
)
async def test_invalid_live_streams(served: Served, requests: list[Any], field: str) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in served.stub.StreamTranscribe(iter(requests)):
            pass
    assert _violation(caught.value)[1] == field
    assert served.scripted.uploads == []


async def test_cancelling_a_live_stream_stops_the_work(served: Served) -> None:
    call = served.stub.StreamTranscribe()
    await call.write(_live_config("scripted/any"))
    await call.read()
    await call.write(_chunk(32000))
    await call.read()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.read()
    rows: list[Any] = []
    async with asyncio.timeout(5):
        while not rows:  # the server notices the cancel on its own schedule
            rows = await _rows(served.gateway, "audio.StreamTranscribe")
    assert rows[0]["status"] == "cancelled"


# --------------------------------------------------------------------------------------------
# ListVoices
# --------------------------------------------------------------------------------------------


async def test_list_voices_orders_filters_and_pages(served: Served) -> None:
    everything = await served.stub.ListVoices(audio_pb2.ListVoicesRequest())
    keys = [(v.provider, v.voice_id) for v in everything.voices]
    assert keys == sorted(keys)
    assert {v.provider for v in everything.voices} == {"openai", "azure"}
    assert "openai/tts-1" in everything.voices[-1].models

    only = await served.stub.ListVoices(audio_pb2.ListVoicesRequest(provider="openai"))
    assert len(only.voices) == 13
    assert {v.provider for v in only.voices} == {"openai"}
    by_model = await served.stub.ListVoices(audio_pb2.ListVoicesRequest(model="azure/tts"))
    assert {v.provider for v in by_model.voices} == {"azure"}

    first = await served.stub.ListVoices(audio_pb2.ListVoicesRequest(page_size=10))
    second = await served.stub.ListVoices(
        audio_pb2.ListVoicesRequest(page_size=100, page_token=first.next_page_token)
    )
    assert [v.voice_id for v in [*first.voices, *second.voices]] == [v.voice_id for v in everything.voices]
    assert second.next_page_token == ""

    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.ListVoices(audio_pb2.ListVoicesRequest(page_token="garbage"))
    assert _violation(caught.value)[1] == "page_token"
    with pytest.raises(aio.AioRpcError) as caught:
        await served.stub.ListVoices(audio_pb2.ListVoicesRequest(provider="nope"))
    assert caught.value.code() == StatusCode.NOT_FOUND
