"""Cohere `POST /v2/embed`: homa EmbedRequest -> request body, response JSON -> EmbedResponse.

Body: `model`, `input_type` (required by v2: QUERY -> search_query, DOCUMENT and unset ->
search_document, CLASSIFICATION -> classification, CLUSTERING -> clustering; `image` for an
all-image batch), `embedding_types: ["float"]`, `truncate: "NONE"` (an input longer than the
model's limit fails upstream, as the EmbedRequest contract says), `output_dimension` when
`dimensions` is set (embed-v4). Texts go in `texts`; a batch with images goes in `inputs` (each
input one `text` or `image_url` data-URI content, embed-v4). At most 96 inputs per call. Usage is
`meta.billed_units.input_tokens`.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.providers._embedding_wire import new_response
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import EmbeddingLimits

__all__ = ["LIMITS", "build_embed_body", "parse_embed_response"]

LIMITS = EmbeddingLimits(max_inputs=96, max_concurrency=4)

_INPUT_TYPES = {
    embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY: "search_query",
    embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT: "search_document",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLASSIFICATION: "classification",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLUSTERING: "clustering",
}


def _content(item: embedding_pb2.EmbedInput) -> dict[str, Any]:
    if item.WhichOneof("content") == "image":
        data = base64.b64encode(item.image.data).decode()
        return {"type": "image_url", "image_url": {"url": f"data:{item.image.mime_type};base64,{data}"}}
    return {"type": "text", "text": item.text}


def build_embed_body(request: embedding_pb2.EmbedRequest, model: str) -> dict[str, Any]:
    """The JSON body of `POST /v2/embed` (`V2EmbedRequest`)."""
    images = [item.WhichOneof("content") == "image" for item in request.inputs]
    body: dict[str, Any] = {}
    if request.HasField("extra_body"):
        body.update(json_format.MessageToDict(request.extra_body))
    input_type = _INPUT_TYPES.get(request.input_type, "search_document")
    if all(images):
        input_type = "image"
    body.update(model=model, input_type=input_type, embedding_types=["float"], truncate="NONE")
    if any(images):
        body["inputs"] = [{"content": [_content(item)]} for item in request.inputs]
    else:
        body["texts"] = [item.text for item in request.inputs]
    if request.HasField("dimensions"):
        body["output_dimension"] = request.dimensions
    return body


def parse_embed_response(provider: str, payload: Any, expected: int) -> embedding_pb2.EmbedResponse:
    """An `EmbedByTypeResponse` as an EmbedResponse with the float vectors.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or a wrong number of vectors.
    """
    embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
    floats = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(floats, list) or not all(
        isinstance(v, list) and all(isinstance(x, int | float) for x in v) for v in floats
    ):
        raise protocol_error(provider, "the embed response has no `embeddings.float` array")
    meta = payload.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    tokens = billed.get("input_tokens", 0) if isinstance(billed, dict) else 0
    return new_response(
        provider,
        [[float(x) for x in v] for v in floats],
        expected,
        "",
        int(tokens) if isinstance(tokens, int | float) else 0,
    )
