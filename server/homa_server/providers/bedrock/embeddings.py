"""Bedrock embeddings through InvokeModel (`POST /model/{modelId}/invoke`) with each model family's
native body; the family is recognised from the model id (inference-profile prefixes allowed).

Amazon Titan text (`amazon.titan-embed-text-v1`, `-v2:0`): one text per call, `{"inputText"}` plus
for v2 `dimensions` (256, 512 or 1024) and `normalize: true`; answer `{"embedding",
"inputTextTokenCount"}`. Titan multimodal (`amazon.titan-embed-image-v1`): one input per call, a
text (`inputText`) or an image (`inputImage`, base64), `embeddingConfig.outputEmbeddingLength` for
`dimensions`. Cohere (`cohere.embed-*`): up to 96 texts, `{"texts", "input_type", "truncate":
"NONE", "embedding_types": ["float"]}` (+ `output_dimension` on embed-v4); answer
`{"embeddings": {"float": [[...]]}}` (or a bare list from older models). Token usage: the body's
count for Titan, else the `X-Amzn-Bedrock-Input-Token-Count` header.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, FieldViolation, GatewayError, Reason, invalid_argument
from homa_server.providers._embedding_wire import new_response, texts_of
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import EmbeddingLimits

__all__ = ["build_invoke_body", "family_of", "limits_for", "parse_invoke_response"]

Family = Literal["titan-text", "titan-image", "cohere"]
INPUT_COUNT_HEADER = "x-amzn-bedrock-input-token-count"

_COHERE_TYPES = {
    embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY: "search_query",
    embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT: "search_document",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLASSIFICATION: "classification",
    embedding_pb2.EMBEDDING_INPUT_TYPE_CLUSTERING: "clustering",
}


def family_of(model: str) -> Family:
    """The embedding family of a Bedrock model id.

    Raises:
        GatewayError: FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED for a model that is not a
            known embedding model.
    """
    if "titan-embed-image" in model:
        return "titan-image"
    if "titan-embed-text" in model or "titan-embed-g1-text" in model:
        return "titan-text"
    if "cohere.embed" in model:
        return "cohere"
    raise GatewayError(
        f"{model!r} is not a Bedrock embedding model this gateway knows (Titan or Cohere embed)",
        Code.FAILED_PRECONDITION,
        Reason.CAPABILITY_NOT_SUPPORTED,
        metadata={"model": model},
    )


def limits_for(model: str) -> EmbeddingLimits:
    """Titan models take one input per call (run 8 at once); Cohere takes 96 texts."""
    if family_of(model) == "cohere":
        return EmbeddingLimits(max_inputs=96, max_concurrency=4)
    return EmbeddingLimits(max_inputs=1, max_concurrency=8)


def build_invoke_body(request: embedding_pb2.EmbedRequest, model: str) -> dict[str, Any]:
    """The native InvokeModel body for `request` (at most `limits_for(model).max_inputs` inputs).

    Raises:
        GatewayError: INVALID_ARGUMENT for inputs or dimensions the model family cannot take.
    """
    family = family_of(model)
    if family == "cohere":
        body: dict[str, Any] = {
            "texts": texts_of(request, "bedrock"),
            "input_type": _COHERE_TYPES.get(request.input_type, "search_document"),
            "truncate": "NONE",
            "embedding_types": ["float"],
        }
        if request.HasField("dimensions"):
            body["output_dimension"] = request.dimensions
        return body
    item = request.inputs[0]
    if family == "titan-image":
        body = {}
        if item.WhichOneof("content") == "image":
            body["inputImage"] = base64.b64encode(item.image.data).decode()
        else:
            body["inputText"] = item.text
        if request.HasField("dimensions"):
            _check_dimension(request.dimensions, (256, 384, 1024))
            body["embeddingConfig"] = {"outputEmbeddingLength": request.dimensions}
        return body
    body = {"inputText": texts_of(request, "bedrock")[0]}
    if "v2" in model:
        body["normalize"] = True
        if request.HasField("dimensions"):
            _check_dimension(request.dimensions, (256, 512, 1024))
            body["dimensions"] = request.dimensions
    elif request.HasField("dimensions"):
        raise invalid_argument(
            "this Titan model has a fixed size", FieldViolation("dimensions", "not supported by this model")
        )
    return body


def _check_dimension(value: int, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        raise invalid_argument(
            "unsupported dimensions",
            FieldViolation("dimensions", f"this model supports {', '.join(map(str, allowed))}"),
        )


def parse_invoke_response(
    provider: str, model: str, payload: Any, headers: Mapping[str, str], expected: int
) -> embedding_pb2.EmbedResponse:
    """The model's native answer as an EmbedResponse.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or a wrong number of vectors.
    """
    if not isinstance(payload, dict):
        raise protocol_error(provider, "the InvokeModel answer is not a JSON object")
    if family_of(model) == "cohere":
        raw = payload.get("embeddings")
        vectors = raw.get("float") if isinstance(raw, dict) else raw
    else:
        vectors = [payload.get("embedding")]
    if not isinstance(vectors, list) or not all(
        isinstance(v, list) and all(isinstance(x, int | float) for x in v) for v in vectors
    ):
        raise protocol_error(provider, "the InvokeModel answer has no embedding arrays")
    tokens = payload.get("inputTextTokenCount")
    if not isinstance(tokens, int):
        header = headers.get(INPUT_COUNT_HEADER, "0")
        tokens = int(header) if header.isdigit() else 0
    return new_response(provider, [[float(x) for x in v] for v in vectors], expected, model, tokens)
