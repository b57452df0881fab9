"""Deterministic fake embedding vectors shared by the vendor fakes' embeddings endpoints.

`fake_vector(text, dims)` is a unit vector seeded by the SHA-256 of the text, so the same text
always gets the same vector (in every fake and every process) and tests can predict results.
`fake_tokens(text)` is a stable token count (whitespace words, at least 1).
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np


def fake_vector(text: str, dims: int) -> list[float]:
    """A unit float32 vector of `dims` values determined by `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    vector /= np.linalg.norm(vector)
    values: list[float] = vector.tolist()
    return values


def fake_tokens(text: str) -> int:
    """A stable token count for `text`."""
    return max(1, len(text.split()))


def packed(values: list[float]) -> str:
    """`values` as base64 of little-endian float32 (OpenAI's `encoding_format: "base64"`)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def unpacked(encoded: str) -> list[float]:
    """The inverse of `packed`."""
    values: list[float] = np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist()
    return values


def ollama_embed_payload(body: dict[str, object]) -> dict[str, object]:
    """An Ollama `EmbedResponse` for an `/api/embed` body: 768 dimensions or `dimensions`."""
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else [str(t) for t in raw] if isinstance(raw, list) else []
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) else 768
    return {
        "model": body.get("model"),
        "embeddings": [fake_vector(t, size) for t in texts],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": sum(fake_tokens(t) for t in texts),
    }


def cohere_embed_payload(body: dict[str, object]) -> dict[str, object]:
    """A Cohere `EmbedByTypeResponse` for a `/v2/embed` body: 1536 dims or `output_dimension`.
    Image inputs are keyed by their data URI."""
    texts = body.get("texts")
    inputs = body.get("inputs")
    keys: list[str] = []
    if isinstance(texts, list):
        keys = [str(t) for t in texts]
    elif isinstance(inputs, list):
        for item in inputs:
            part = item["content"][0]
            keys.append(part["text"] if part["type"] == "text" else part["image_url"]["url"])
    dims = body.get("output_dimension")
    size = dims if isinstance(dims, int) else 1536
    tokens = sum(fake_tokens(k) for k in keys)
    payload: dict[str, object] = {
        "id": "emb-fx1",
        "api_version": {"version": "2"},  # required at the top level by the spec's EmbedByTypeResponse
        "embeddings": {"float": [fake_vector(k, size) for k in keys]},
        "response_type": "embeddings_by_type",
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
    }
    if isinstance(texts, list):
        payload["texts"] = keys
    return payload


def gemini_batch_embed_payload(body: dict[str, object]) -> dict[str, object]:
    """A Gemini `BatchEmbedContentsResponse`: 768 dims or each request's `outputDimensionality`."""
    requests = body.get("requests")
    embeddings = []
    tokens = 0
    for item in requests if isinstance(requests, list) else []:
        text = "".join(part.get("text", "") for part in item["content"]["parts"])
        size = (item.get("embedContentConfig") or {}).get("outputDimensionality") or 768
        embeddings.append({"values": fake_vector(text, size)})
        tokens += fake_tokens(text)
    return {"embeddings": embeddings, "usageMetadata": {"promptTokenCount": tokens}}


def vector_of(embedding: object) -> list[float]:
    """The vector of an `Embedding` as adapters return it: `packed` float32 bytes, else `values`."""
    raw = getattr(embedding, "packed", b"")
    if raw:
        values: list[float] = np.frombuffer(raw, dtype="<f4").tolist()
        return values
    return list(getattr(embedding, "values", []))
