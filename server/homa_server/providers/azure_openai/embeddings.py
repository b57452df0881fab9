"""Azure OpenAI `POST {base}/deployments/{deployment}/embeddings?api-version=...`.

The body is OpenAI's (see providers/openai/embeddings.py) without `model`: Azure picks the model
by the deployment in the path. Vectors are requested as floats (the only response form Azure's
spec documents). At most 2048 inputs per call.
"""

from __future__ import annotations

from typing import Any

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers.base import EmbeddingLimits
from homa_server.providers.openai.embeddings import build_embeddings_body, parse_embeddings

__all__ = ["LIMITS", "build_azure_embeddings_body", "parse_embeddings"]

LIMITS = EmbeddingLimits(max_inputs=2048, max_concurrency=4)


def build_azure_embeddings_body(request: embedding_pb2.EmbedRequest) -> dict[str, Any]:
    """The JSON body of Azure's embeddings call.

    Raises:
        GatewayError: INVALID_ARGUMENT for image inputs.
    """
    body = build_embeddings_body(request, "", base64=False)
    del body["model"]
    return body
