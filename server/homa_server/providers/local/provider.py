"""`LocalProvider` (kind `local`): offline embeddings with all-MiniLM-L6-v2, no key, no network.

Models: `all-minilm-l6-v2` (also accepted: `all-MiniLM-L6-v2` and
`sentence-transformers/all-MiniLM-L6-v2`, any case). Vectors have 384 dimensions and unit norm and
match sentence-transformers' output for the same text. Texts longer than 256 tokens are truncated,
as sentence-transformers does (the token count reported in usage is after truncation).
`input_type` is ignored (the model has no query/document prompts).

Settings `options`: `model_dir` (another copy of the model files), `batch_size` (inputs per forward
pass, default 64), `threads` (forward passes run at once in worker threads, default 1; each pass
uses numpy's BLAS threads, so raising this rarely helps on small machines).

The model is loaded on first use (about 0.3 s), in a worker thread, once per process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, FieldViolation, GatewayError, Reason, invalid_argument
from homa_server.observability.call_state import add_upstream_time
from homa_server.providers._embedding_wire import packed_response
from homa_server.providers._http import deadline_exceeded
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.local.assets import load_minilm, model_dir
from homa_server.providers.local.audio import LocalAudio
from homa_server.providers.local.minilm import MiniLM
from homa_server.settings import ProviderSettings

__all__ = ["MODEL_ID", "LocalProvider"]

MODEL_ID = "all-minilm-l6-v2"
DIMENSION = 384
_ALIASES = frozenset({MODEL_ID, "sentence-transformers/all-minilm-l6-v2"})
_MAX_TOKENS = 256


class LocalProvider(LocalAudio):
    """Implements `EmbeddingProvider` and `ModelListingProvider` on the local CPU, and
    `TranscriptionProvider` / `SpeechProvider` with the optional `local-audio` extra (audio.py).

    Args:
        name: instance name from settings.
        settings: `options` as described in the module docstring.
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        options: dict[str, Any] = settings.options
        self._model_dir = options.get("model_dir")
        self._batch = int(options.get("batch_size", 64))
        self._threads = asyncio.Semaphore(int(options.get("threads", 1)))
        self._model: MiniLM | None = None
        self._init_audio(options)

    @property
    def name(self) -> str:
        """Instance name from settings."""
        return self._name

    @property
    def kind(self) -> str:
        """Always "local"."""
        return self._kind

    async def aclose(self) -> None:
        """Nothing to release (the loaded model is shared by the process)."""

    async def list_models(self) -> list[str]:
        """The one embedding model (the speech models of audio.py are addressed as local/<model>)."""
        return [MODEL_ID]

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """One forward pass per request; routing runs them through `threads` worker threads."""
        return EmbeddingLimits(max_inputs=self._batch, max_concurrency=4)

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embed the texts of `request` in one forward pass. See `EmbeddingProvider.embed`.

        Raises:
            GatewayError: NOT_FOUND / MODEL_NOT_FOUND for another model; INVALID_ARGUMENT for image
                inputs or `dimensions` other than 384; FAILED_PRECONDITION / EXTRA_NOT_INSTALLED
                when the model files are missing; DEADLINE_EXCEEDED when the deadline passed.
        """
        if ctx.model.lower() not in _ALIASES:
            raise GatewayError(
                f"the local provider serves only {MODEL_ID!r}, not {ctx.model!r}",
                Code.NOT_FOUND,
                Reason.MODEL_NOT_FOUND,
                metadata={"provider": self._name, "model": ctx.model},
                field_violations=[FieldViolation("model", "unknown model")],
            )
        texts = _texts(request)
        async with self._threads:
            if ctx.remaining() == 0.0:
                raise deadline_exceeded()
            model = self._model
            if model is None:
                model = await asyncio.to_thread(self._load)
            started = time.perf_counter()
            vectors, tokens = await asyncio.to_thread(model.encode, texts)
            add_upstream_time(time.perf_counter() - started)
        rows = [row.tobytes() for row in vectors.astype("<f4", copy=False)]
        return packed_response(self._name, rows, len(texts), MODEL_ID, tokens)

    def _load(self) -> MiniLM:
        self._model = load_minilm(model_dir(self._model_dir), _MAX_TOKENS)
        return self._model


def _texts(request: embedding_pb2.EmbedRequest) -> list[str]:
    """The texts of `request`, or INVALID_ARGUMENT listing image inputs and bad dimensions."""
    violations: list[FieldViolation] = []
    if request.HasField("dimensions") and request.dimensions != DIMENSION:
        violations.append(FieldViolation("dimensions", f"{MODEL_ID} produces {DIMENSION} dimensions only"))
    texts: list[str] = []
    for i, item in enumerate(request.inputs):
        if item.WhichOneof("content") != "text":
            violations.append(FieldViolation(f"inputs[{i}].image", f"{MODEL_ID} embeds text only"))
        else:
            texts.append(item.text)
    if violations:
        raise invalid_argument("the local model cannot embed this request", *violations)
    return texts
