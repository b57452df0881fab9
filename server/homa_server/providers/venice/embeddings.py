"""Venice `POST /embeddings`: the OpenAI wire format (`CreateEmbeddingRequestSchema` in Venice's
spec), so the OpenAI adapter's body builder and parser are reused. Vectors are requested as floats:
Venice's spec documents only the float form of the response. At most 2048 inputs per call."""

from __future__ import annotations

from typing import Any

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers.base import EmbeddingLimits
from homa_server.providers.openai.embeddings import build_embeddings_body, parse_embeddings

__all__ = ["LIMITS", "build_venice_embeddings_body", "parse_embeddings"]

LIMITS = EmbeddingLimits(max_inputs=2048, max_concurrency=4)


def build_venice_embeddings_body(request: embedding_pb2.EmbedRequest, model: str) -> dict[str, Any]:
    """The JSON body of Venice's `POST /embeddings`.

    Raises:
        GatewayError: INVALID_ARGUMENT for image inputs.
    """
    return build_embeddings_body(request, model, base64=False)
