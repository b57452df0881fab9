"""The fake OpenAI server's `POST /v1/embeddings` (also used by the Venice and Azure fakes' shapes).

Replies are `CreateEmbeddingResponse` bodies: one `fake_vector` per input (default 1536
dimensions, 3072 for `text-embedding-3-large`, or the requested `dimensions`), as float arrays or
base64 strings per `encoding_format`, with `usage.prompt_tokens` = sum of `fake_tokens`.

The spec's `Embedding.embedding` schema only describes the float form; `spec_view` turns base64
strings back into floats so base64 replies are checked against the same schema.
"""

from __future__ import annotations

from typing import Any

from tests.providers.fakes._server import Reply, json_reply
from tests.providers.fakes.embedding_vectors import fake_tokens, fake_vector, packed, unpacked

_NATIVE = {"text-embedding-3-large": 3072}


def embeddings_payload(body: Any, *, default_dims: int = 1536) -> dict[str, Any]:
    """The `CreateEmbeddingResponse` for a (spec-valid) request body."""
    model = str(body.get("model", ""))
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
    dims = int(body.get("dimensions") or _NATIVE.get(model, default_dims))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_vector(text, dims)
        data.append(
            {"object": "embedding", "index": index, "embedding": packed(vector) if as_base64 else vector}
        )
    tokens = sum(fake_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def embeddings_reply(body: Any) -> Reply:
    """A 200 answer to `POST /embeddings`."""
    return json_reply(embeddings_payload(body))


def spec_view(payload: Any) -> Any:
    """`payload` with base64 embeddings decoded to floats (for schema validation)."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        for item in payload["data"]:
            if isinstance(item, dict) and isinstance(item.get("embedding"), str):
                item["embedding"] = unpacked(item["embedding"])
    return payload
