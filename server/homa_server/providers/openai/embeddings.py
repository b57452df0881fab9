"""OpenAI `POST /embeddings`: homa EmbedRequest -> request body, response JSON -> EmbedResponse.

Used by `OpenAIProvider` for api.openai.com and OpenAI-compatible servers. Vectors are requested
as base64 from OpenAI itself (about 4x less to transfer and parse than JSON numbers) and as floats
from compatible servers, some of which do not implement `encoding_format: "base64"`.
`input_type` has no OpenAI equivalent and is not sent; `user` and `dimensions` are passed through;
`extra_body` is merged first, so fields the adapter sets win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import json_format

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers._embedding_wire import bytes_from_base64, packed_response, texts_of
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import EmbeddingLimits

__all__ = ["MAX_INPUTS", "build_embeddings_body", "embedding_limits", "parse_embeddings"]

#: OpenAI accepts at most 2048 inputs per request.
MAX_INPUTS = 2048


def embedding_limits(options: Mapping[str, Any]) -> EmbeddingLimits:
    """Limits from provider `options` (`embedding_batch_size`, `embedding_concurrency`), capped at
    OpenAI's 2048 inputs per request; compatible servers often want smaller batches."""
    size = int(options.get("embedding_batch_size", MAX_INPUTS))
    return EmbeddingLimits(
        max_inputs=max(1, min(size, MAX_INPUTS)),
        max_concurrency=max(1, int(options.get("embedding_concurrency", 4))),
    )


def build_embeddings_body(request: embedding_pb2.EmbedRequest, model: str, *, base64: bool) -> dict[str, Any]:
    """The JSON body of `POST /embeddings` (`CreateEmbeddingRequest`).

    Raises:
        GatewayError: INVALID_ARGUMENT for image inputs (OpenAI embeds text only).
    """
    texts = texts_of(request, "openai")
    body: dict[str, Any] = {}
    if request.HasField("extra_body"):
        body.update(json_format.MessageToDict(request.extra_body))
    body["model"] = model
    body["input"] = texts
    body["encoding_format"] = "base64" if base64 else "float"
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    if request.user:
        body["user"] = request.user
    return body


def parse_embeddings(provider: str, payload: Any, expected: int) -> embedding_pb2.EmbedResponse:
    """A `CreateEmbeddingResponse` as an EmbedResponse with packed vectors in input order.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or a wrong number of vectors.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise protocol_error(provider, "the embeddings response has no `data` array")
    vectors: list[bytes | None] = [None] * len(data)
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise protocol_error(provider, "an embeddings `data` item is not an object")
        index = item.get("index", position)
        raw = item.get("embedding")
        if not isinstance(index, int) or not 0 <= index < len(data) or vectors[index] is not None:
            raise protocol_error(provider, "the embeddings response has bad or repeated indexes")
        if isinstance(raw, str):
            vectors[index] = bytes_from_base64(provider, raw)
        elif isinstance(raw, list):
            try:
                vectors[index] = np.asarray(raw, dtype="<f4").tobytes()
            except (TypeError, ValueError):
                raise protocol_error(provider, "an embedding is not an array of numbers") from None
        else:
            raise protocol_error(provider, "an embedding is neither a number array nor base64")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens", 0)
    model = payload.get("model")
    return packed_response(
        provider,
        [v for v in vectors if v is not None],
        expected,
        model if isinstance(model, str) else "",
        tokens if isinstance(tokens, int) else 0,
    )
