"""Ollama `POST /api/embed`: homa EmbedRequest -> request body, response JSON -> EmbedResponse.

Body: `model`, `input` (array of texts), `truncate: false` (an input longer than the model's
context fails upstream, as the EmbedRequest contract says, instead of being cut silently),
`dimensions` when set, and the provider's `keep_alive`. `input_type` and `user` have no Ollama
equivalent and are not sent. Usage is `prompt_eval_count`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers._embedding_wire import new_response, texts_of
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import EmbeddingLimits

__all__ = ["LIMITS", "build_embed_body", "parse_embed_response"]

#: Ollama documents no batch limit; a local server embeds one batch at a time anyway.
LIMITS = EmbeddingLimits(max_inputs=256, max_concurrency=2)


def build_embed_body(
    request: embedding_pb2.EmbedRequest, model: str, keep_alive: str | float | None
) -> dict[str, Any]:
    """The JSON body of `POST /api/embed` (`EmbedRequest` in the Ollama spec).

    Raises:
        GatewayError: INVALID_ARGUMENT for image inputs.
    """
    texts = texts_of(request, "ollama")
    body: dict[str, Any] = {}
    if request.HasField("extra_body"):
        body.update(json_format.MessageToDict(request.extra_body))
    body.update(model=model, input=texts, truncate=False)
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    if keep_alive is not None:  # a duration string; numbers are seconds
        body["keep_alive"] = keep_alive if isinstance(keep_alive, str) else f"{keep_alive:g}s"
    return body


def parse_embed_response(provider: str, payload: Any, expected: int) -> embedding_pb2.EmbedResponse:
    """An Ollama `EmbedResponse` as an EmbedResponse.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or a wrong number of vectors.
    """
    vectors = payload.get("embeddings") if isinstance(payload, dict) else None
    if not isinstance(vectors, list) or not all(
        isinstance(v, list) and all(isinstance(x, int | float) for x in v) for v in vectors
    ):
        raise protocol_error(provider, "the embed response has no `embeddings` array of number arrays")
    tokens = payload.get("prompt_eval_count", 0)
    model = payload.get("model", "")
    return new_response(
        provider,
        [[float(x) for x in v] for v in vectors],
        expected,
        model if isinstance(model, str) else "",
        tokens if isinstance(tokens, int) else 0,
    )
