"""Checks of AudioService requests, done before anything is sent upstream.

Every failure is INVALID_ARGUMENT / INVALID_REQUEST with a BadRequest field violation naming the
field (`config.mime_type`, `audio_chunk`, `input`, ...). Limits:

* uploads (Transcribe, Translate): `config` first and only once, then at least one non-empty
  `audio_chunk`; each chunk at most `MAX_CHUNK_BYTES` (1 MiB + slack), the whole file at most
  `MAX_UPLOAD_BYTES` (25 MiB, OpenAI's limit);
* live audio (StreamTranscribe): same per-chunk limit, at most `MAX_STREAM_BYTES` in total;
* Synthesize: `input` non-empty and at most `MAX_INPUT_CHARS` characters, `voice` required, a
  known `format`, `speed` within 0.25 to 4.0.
"""

from __future__ import annotations

from collections.abc import Iterable

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import GatewayError, invalid_field

__all__ = [
    "MAX_CHUNK_BYTES",
    "MAX_INPUT_CHARS",
    "MAX_STREAM_BYTES",
    "MAX_UPLOAD_BYTES",
    "RAW_ENCODINGS",
    "TRANSCRIBE_MIME_TYPES",
    "UploadBuffer",
    "audio_before_config",
    "check_stream_config",
    "check_synthesize",
    "check_transcription_config",
    "check_translation_config",
    "duplicate_config",
    "empty_audio",
]

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_STREAM_BYTES = 200 * 1024 * 1024
MAX_CHUNK_BYTES = 1024 * 1024 + 64 * 1024
MAX_INPUT_CHARS = 4096

#: Media types of recorded files accepted by Transcribe and Translate (base type, lower case).
TRANSCRIBE_MIME_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/mp3",
        "audio/mpga",
        "audio/mp4",
        "audio/m4a",
        "audio/x-m4a",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/webm",
        "audio/ogg",
        "audio/flac",
        "audio/x-flac",
        "video/mp4",
        "video/webm",
    }
)

#: Raw (headerless) live encodings: they need a sample rate.
RAW_ENCODINGS = frozenset(
    {audio_pb2.AUDIO_ENCODING_LINEAR16, audio_pb2.AUDIO_ENCODING_MULAW, audio_pb2.AUDIO_ENCODING_ALAW}
)


def audio_before_config() -> GatewayError:
    """The first message of an upload or live stream was audio, not `config`."""
    return invalid_field("config", "the first message must be config, before any audio_chunk")


def duplicate_config() -> GatewayError:
    """A second `config` message."""
    return invalid_field("config", "config may be sent only once, as the first message")


def empty_audio() -> GatewayError:
    """The stream ended without audio."""
    return invalid_field("audio_chunk", "no audio was sent")


class UploadBuffer:
    """Collects audio chunks, enforcing the per-chunk and total limits as they arrive."""

    __slots__ = ("_limit", "_parts", "size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        """Append `chunk`.

        Raises:
            GatewayError: INVALID_ARGUMENT (`audio_chunk`) for an oversized chunk or total.
        """
        if len(chunk) > MAX_CHUNK_BYTES:
            raise invalid_field("audio_chunk", f"chunks may be at most 1 MiB ({len(chunk)} bytes sent)")
        self.size += len(chunk)
        if self.size > self._limit:
            raise invalid_field("audio_chunk", f"the audio exceeds the limit of {self._limit} bytes")
        if chunk:
            self._parts.append(chunk)

    def data(self) -> bytes:
        """Everything so far as one bytes object."""
        if len(self._parts) > 1:
            self._parts = [b"".join(self._parts)]
        return self._parts[0] if self._parts else b""


def _base_mime(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


def _check_common(
    mime_type: str, temperature: float | None, granularities: Iterable[int], prefix: str
) -> None:
    if not mime_type:
        raise invalid_field(f"{prefix}.mime_type", "required, for example audio/mpeg or audio/wav")
    if _base_mime(mime_type) not in TRANSCRIBE_MIME_TYPES:
        raise invalid_field(
            f"{prefix}.mime_type",
            f"unsupported audio format {mime_type!r}; use one of {', '.join(sorted(TRANSCRIBE_MIME_TYPES))}",
        )
    if temperature is not None and not 0.0 <= temperature <= 1.0:
        raise invalid_field(f"{prefix}.temperature", "must be between 0 and 1")
    for value in granularities:
        if value not in (audio_pb2.TIMESTAMP_GRANULARITY_SEGMENT, audio_pb2.TIMESTAMP_GRANULARITY_WORD):
            raise invalid_field(f"{prefix}.timestamp_granularities", f"unknown value {value}")


def check_transcription_config(config: audio_pb2.TranscriptionConfig) -> None:
    """Validate a Transcribe `config` (see the module docstring)."""
    temperature = config.temperature if config.HasField("temperature") else None
    _check_common(config.mime_type, temperature, config.timestamp_granularities, "config")


def check_translation_config(config: audio_pb2.TranslationConfig) -> None:
    """Validate a Translate `config` (see the module docstring)."""
    temperature = config.temperature if config.HasField("temperature") else None
    _check_common(config.mime_type, temperature, config.timestamp_granularities, "config")


def check_stream_config(config: audio_pb2.StreamTranscriptionConfig) -> None:
    """Validate a StreamTranscribe `config`: a known encoding, a sample rate for raw encodings,
    1 to 8 channels."""
    if config.encoding == audio_pb2.AUDIO_ENCODING_UNSPECIFIED:
        raise invalid_field("config.encoding", "required")
    if config.encoding not in audio_pb2.AudioEncoding.values():
        raise invalid_field("config.encoding", f"unsupported encoding {config.encoding}")
    if config.encoding in RAW_ENCODINGS:
        if not config.HasField("sample_rate_hertz"):
            raise invalid_field("config.sample_rate_hertz", "required for raw encodings")
        if not 4000 <= config.sample_rate_hertz <= 192000:
            raise invalid_field("config.sample_rate_hertz", "must be between 4000 and 192000")
    if config.HasField("channels") and not 1 <= config.channels <= 8:
        raise invalid_field("config.channels", "must be between 1 and 8")


def check_synthesize(request: audio_pb2.SynthesizeRequest) -> None:
    """Validate a SynthesizeRequest (see the module docstring)."""
    if not request.input.strip():
        raise invalid_field("input", "required")
    if len(request.input) > MAX_INPUT_CHARS:
        raise invalid_field("input", f"at most {MAX_INPUT_CHARS} characters ({len(request.input)} sent)")
    if not request.voice:
        raise invalid_field("voice", "required; see ListVoices")
    if request.format not in audio_pb2.AudioFormat.values():
        raise invalid_field("format", f"unsupported audio format {request.format}")
    if request.HasField("speed") and not 0.25 <= request.speed <= 4.0:
        raise invalid_field("speed", "must be between 0.25 and 4.0")
    if request.HasField("sample_rate_hertz") and not 8000 <= request.sample_rate_hertz <= 48000:
        raise invalid_field("sample_rate_hertz", "must be between 8000 and 48000")
