"""StreamTranscribe: live transcription over native streaming providers or growing windows.

Contract of `stream_transcribe`:
    * The first client message must be `config` (INVALID_ARGUMENT otherwise, before any event); it
      is validated and resolved; then `route` is sent.
    * Providers implementing `StreamingTranscriptionProvider` get the audio chunks as they arrive
      and their events are passed through.
    * Other `TranscriptionProvider`s are served by WINDOWED transcription: whenever another
      `window_seconds` of audio has arrived, everything received for the current utterance is
      transcribed again and sent as a partial result (`is_final` false) while the audio keeps
      arriving (interim results are skipped when `interim_results` is false). Raw encodings
      (LINEAR16, MULAW, ALAW) are wrapped in a WAV header; an utterance is closed with a final
      result once it holds `max_utterance_seconds` of audio, and the next utterance starts with
      the following audio. Compressed encodings cannot be cut, so they form one utterance (sizes
      are estimated at 16 kB per second for windowing). At the end of the audio the open utterance
      is transcribed once more and sent as final. Partials are re-transcriptions, so they cost
      provider calls: about (utterance length / window) calls per utterance.
    * The stream ends with `usage` (when tokens were reported) and exactly one `finish` (all
      final texts joined with spaces, seconds of audio received). Empty audio is INVALID_ARGUMENT.
    * Cancelling the RPC cancels the audio reader and any transcription in flight.
    * One usage record per call, with `audio_seconds` = seconds of audio received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa.type.v1 import usage_pb2
from homa_server.providers.base import CallContext, StreamingTranscriptionProvider, TranscriptionProvider
from homa_server.routing.audio import AudioDispatcher, call_context
from homa_server.routing.audio_metering import AudioMeter
from homa_server.validation.audio import (
    MAX_STREAM_BYTES,
    RAW_ENCODINGS,
    UploadBuffer,
    audio_before_config,
    check_stream_config,
    duplicate_config,
    empty_audio,
)

__all__ = ["LiveOptions", "stream_transcribe"]

_COMPRESSED_BYTES_PER_SECOND = 16000.0
_MIME = {
    audio_pb2.AUDIO_ENCODING_FLAC: "audio/flac",
    audio_pb2.AUDIO_ENCODING_OGG_OPUS: "audio/ogg",
    audio_pb2.AUDIO_ENCODING_WEBM_OPUS: "audio/webm",
    audio_pb2.AUDIO_ENCODING_MP3: "audio/mpeg",
}
_WAV_FORMAT = {
    audio_pb2.AUDIO_ENCODING_LINEAR16: (1, 16),
    audio_pb2.AUDIO_ENCODING_ALAW: (6, 8),
    audio_pb2.AUDIO_ENCODING_MULAW: (7, 8),
}


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """Windowing of providers without native streaming (see the module docstring)."""

    window_seconds: float = 2.0
    max_utterance_seconds: float = 30.0


def wav_header(
    encoding: audio_pb2.AudioEncoding.ValueType, rate: int, channels: int, data_size: int
) -> bytes:
    """A 44-byte RIFF/WAVE header for `data_size` bytes of raw audio in `encoding`."""
    tag, bits = _WAV_FORMAT[encoding]
    block = channels * bits // 8
    return b"".join(
        (
            b"RIFF", (36 + data_size).to_bytes(4, "little"), b"WAVEfmt ", (16).to_bytes(4, "little"),
            tag.to_bytes(2, "little"), channels.to_bytes(2, "little"), rate.to_bytes(4, "little"),
            (rate * block).to_bytes(4, "little"), block.to_bytes(2, "little"), bits.to_bytes(2, "little"),
            b"data", data_size.to_bytes(4, "little"),
        )
    )  # fmt: skip


@dataclass
class _Audio:
    """Audio received so far, filled by the reader task."""

    buffer: UploadBuffer = field(default_factory=lambda: UploadBuffer(MAX_STREAM_BYTES))
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    duration: float = 0.0  # for compressed encodings: as reported by the last transcription
    changed: asyncio.Event = field(default_factory=asyncio.Event)


async def _read(requests: AsyncIterator[audio_pb2.StreamTranscribeRequest], audio: _Audio) -> None:
    try:
        async for item in requests:
            if item.WhichOneof("input") == "config":
                raise duplicate_config()
            audio.buffer.add(item.audio_chunk)
            if item.audio_chunk:
                audio.chunks.append(item.audio_chunk)
                audio.changed.set()
    finally:
        audio.ended = True
        audio.changed.set()


async def stream_transcribe(
    dispatcher: AudioDispatcher,
    requests: AsyncIterator[audio_pb2.StreamTranscribeRequest],
    remaining: float | None,
    request_id: str = "",
    options: LiveOptions = LiveOptions(),
) -> AsyncGenerator[audio_pb2.StreamTranscribeResponse, None]:
    """Drive one StreamTranscribe call; see the module docstring."""
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("input") != "config":
        raise audio_before_config()
    config = first.config
    check_stream_config(config)
    provider, model = dispatcher.transcriber(config.model)
    route = usage_pb2.Route(provider=provider.name, model=model, attempt=1)
    yield audio_pb2.StreamTranscribeResponse(route=route)
    meter = AudioMeter(dispatcher.recorder, provider, model, "audio.StreamTranscribe")
    audio = _Audio()
    reader = asyncio.create_task(_read(requests, audio))
    finals: list[str] = []
    error: BaseException | None = None
    try:
        ctx = call_context(model, remaining, request_id)
        if isinstance(provider, StreamingTranscriptionProvider):
            events = provider.stream_transcribe(config, _chunks(audio, reader), ctx)
        else:
            events = _Windows(provider, config, audio, options, ctx).run(reader)
        try:
            async for event in events:
                if event.WhichOneof("event") == "result" and event.result.is_final:
                    finals.append(event.result.text.strip())
                if event.WhichOneof("event") == "usage":
                    meter.usage.CopyFrom(event.usage)
                yield event
        finally:
            await events.aclose()
        await reader  # raises the reader's validation error, if any
        if audio.buffer.size == 0:
            raise empty_audio()
        seconds = _seconds(config, audio.buffer.size) or audio.duration
        meter.audio_seconds = seconds
        finish = audio_pb2.StreamTranscribeFinish(
            text=" ".join(t for t in finals if t), duration_seconds=seconds, usage=meter.usage
        )
        yield audio_pb2.StreamTranscribeResponse(finish=finish)
    except BaseException as exc:
        error = exc
        raise
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        meter.close(error)


def _seconds(config: audio_pb2.StreamTranscriptionConfig, size: int) -> float:
    """Seconds in `size` bytes of raw audio; 0.0 for compressed encodings."""
    if config.encoding not in RAW_ENCODINGS:
        return 0.0
    width = 2 if config.encoding == audio_pb2.AUDIO_ENCODING_LINEAR16 else 1
    channels = config.channels if config.HasField("channels") else 1
    return size / float(config.sample_rate_hertz * channels * width)


async def _chunks(audio: _Audio, reader: asyncio.Task[None]) -> AsyncGenerator[bytes, None]:
    """The audio chunks as they arrive (for native streaming providers)."""
    sent = 0
    while True:
        while sent < len(audio.chunks):
            sent += 1
            yield audio.chunks[sent - 1]
        if audio.ended:
            await reader  # raises the reader's error, if any
            return
        audio.changed.clear()
        await audio.changed.wait()


class _Windows:
    """Growing-window transcription for providers without native streaming (module docstring)."""

    def __init__(
        self,
        provider: TranscriptionProvider,
        config: audio_pb2.StreamTranscriptionConfig,
        audio: _Audio,
        options: LiveOptions,
        ctx: CallContext,
    ) -> None:
        self._provider = provider
        self._config = config
        self._audio = audio
        self._ctx = ctx
        self._raw = raw = config.encoding in RAW_ENCODINGS
        self._channels = config.channels if config.HasField("channels") else 1
        self._block = self._channels * (2 if config.encoding == audio_pb2.AUDIO_ENCODING_LINEAR16 else 1)
        rate = config.sample_rate_hertz
        self._per_second = rate * self._block if raw else _COMPRESSED_BYTES_PER_SECOND
        self._window = max(1, int(options.window_seconds * self._per_second))
        self._longest = int(options.max_utterance_seconds * self._per_second) // self._block * self._block
        if not raw:
            self._longest = 0  # compressed audio cannot be cut: one utterance
        self._interim = not config.HasField("interim_results") or config.interim_results
        self._request = audio_pb2.TranscriptionConfig(
            model=config.model,
            mime_type="audio/wav" if raw else _MIME[config.encoding],
            language=config.language,
            prompt=config.prompt,
            user=config.user,
        )
        if config.word_timestamps:
            self._request.timestamp_granularities.append(audio_pb2.TIMESTAMP_GRANULARITY_WORD)
        if config.HasField("extra_body"):
            self._request.extra_body.CopyFrom(config.extra_body)
        self._usage = usage_pb2.Usage()
        self._index = self._start = 0

    def _aligned(self, size: int) -> int:
        return size // self._block * self._block if self._raw else size

    async def run(
        self, reader: asyncio.Task[None]
    ) -> AsyncGenerator[audio_pb2.StreamTranscribeResponse, None]:
        """Partial results while audio arrives, finals per utterance, a final at the end."""
        audio = self._audio
        last = 0
        while not audio.ended:
            audio.changed.clear()
            size = audio.buffer.size
            if self._longest and size - self._start >= self._longest:
                for event in await self._result(self._start + self._longest, final=True):
                    yield event
                self._index, self._start = self._index + 1, self._start + self._longest
                last = self._start
            elif self._interim and size - last >= self._window:
                last = self._aligned(size)
                for event in await self._result(last, final=False):
                    yield event
            else:
                await audio.changed.wait()
        await reader  # raises the reader's error (too much audio, a second config) before the final
        size = self._aligned(audio.buffer.size)
        if size > self._start:
            for event in await self._result(size, final=True):
                yield event

    async def _result(self, end: int, *, final: bool) -> list[audio_pb2.StreamTranscribeResponse]:
        """Transcribe the current utterance up to byte `end`; the result (and usage) events."""
        data = self._audio.buffer.data()
        if self._raw:
            piece = data[self._start : end]
            header = wav_header(
                self._config.encoding, self._config.sample_rate_hertz, self._channels, len(piece)
            )
            upload = header + piece
        else:
            upload = data[:end]
        response = await self._provider.transcribe(self._request, upload, self._ctx)
        offset = self._start / self._per_second if self._raw else 0.0
        until = end / self._per_second
        if not self._raw:
            self._audio.duration = response.duration_seconds
            until = response.duration_seconds or until
        item = audio_pb2.TranscriptResult(
            segment_index=self._index,
            text=response.text,
            is_final=final,
            start_seconds=offset,
            end_seconds=until,
            language=response.language,
        )
        for word in response.words:
            moved = item.words.add()
            moved.CopyFrom(word)
            moved.start_seconds += offset
            moved.end_seconds += offset
        events = [audio_pb2.StreamTranscribeResponse(result=item)]
        if response.usage.total_tokens or response.usage.input_tokens:
            self._usage.input_tokens += response.usage.input_tokens
            self._usage.output_tokens += response.usage.output_tokens
            self._usage.total_tokens += response.usage.total_tokens
            events.append(audio_pb2.StreamTranscribeResponse(usage=self._usage))
        return events
