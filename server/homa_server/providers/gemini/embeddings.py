"""Gemini `POST models/{model}:batchEmbedContents`: EmbedRequest -> body, response -> EmbedResponse.

Each input becomes one `EmbedContentRequest` (`model: models/<id>`, `content.parts[0].text`) with
`embedContentConfig.taskType` (QUERY -> RETRIEVAL_QUERY, DOCUMENT -> RETRIEVAL_DOCUMENT,
CLASSIFICATION, CLUSTERING; unset: not sent), `outputDimensionality` when `dimensions` is set and
`autoTruncate: false` (an over-long input fails upstream, as the EmbedRequest contract says). At
most 100 requests per batch. Gemini embedding models take text only. Usage is
`usageMetadata.promptTokenCount` when the API reports it.
"""

from __future__ import annotations

from typing import Any

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers._embedding_wire import new_response, texts_of
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import EmbeddingLimits
from homa_server.providers.gemini.chat_request import model_path

__all__ = ["LIMITS", "build_batch_embed_body", "parse_batch_embed_response"]

LIMITS = EmbeddingLimits(max_inputs=100, max_concurrency=4)

_TASK_TYPES = {
    embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY: "RETRIEVAL_QUERY",
    embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT: "RETRIEVAL_DOCUMENT",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLASSIFICATION: "CLASSIFICATION",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLUSTERING: "CLUSTERING",
}


def build_batch_embed_body(request: embedding_pb2.EmbedRequest, model: str) -> dict[str, Any]:
    """The JSON body of `batchEmbedContents` (`BatchEmbedContentsRequest`).

    Raises:
        GatewayError: INVALID_ARGUMENT for image inputs.
    """
    texts = texts_of(request, "gemini")
    config: dict[str, Any] = {"autoTruncate": False}
    task = _TASK_TYPES.get(request.input_type)
    if task is not None:
        config["taskType"] = task
    if request.HasField("dimensions"):
        config["outputDimensionality"] = request.dimensions
    name = model_path(model)
    return {
        "requests": [
            {"model": name, "content": {"parts": [{"text": text}]}, "embedContentConfig": config}
            for text in texts
        ]
    }


def parse_batch_embed_response(
    provider: str, payload: Any, expected: int, model: str
) -> embedding_pb2.EmbedResponse:
    """A `BatchEmbedContentsResponse` as an EmbedResponse.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or a wrong number of vectors.
    """
    items = payload.get("embeddings") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise protocol_error(provider, "the batch embed response has no `embeddings` array")
    vectors: list[list[float]] = []
    for item in items:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(isinstance(x, int | float) for x in values):
            raise protocol_error(provider, "an embedding has no `values` number array")
        vectors.append([float(x) for x in values])
    usage = payload.get("usageMetadata")
    tokens = usage.get("promptTokenCount", 0) if isinstance(usage, dict) else 0
    return new_response(provider, vectors, expected, model, tokens if isinstance(tokens, int) else 0)
