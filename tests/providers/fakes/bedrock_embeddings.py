"""InvokeModel embedding bodies for the fake Bedrock server: request checks and answers.

InvokeModel's body is opaque in the botocore service model (a blob), so the native body of each
embedding family is checked here against AWS's model-parameter documentation: Amazon Titan Text
Embeddings (v1, v2), Titan Multimodal Embeddings G1, and Cohere Embed (v3, v4) on Bedrock. Unknown
keys, missing required keys and out-of-range values are problems. Answers carry the
`X-Amzn-Bedrock-Input-Token-Count` header, as InvokeModel answers do.
"""

from __future__ import annotations

from typing import Any

from tests.providers.fakes._server import Reply, json_reply
from tests.providers.fakes.embedding_vectors import fake_tokens, fake_vector

_TITAN_V2 = {"inputText", "dimensions", "normalize", "embeddingTypes"}
_TITAN_IMAGE = {"inputText", "inputImage", "embeddingConfig"}
_COHERE = {"texts", "images", "input_type", "truncate", "embedding_types", "output_dimension", "max_tokens"}
_COHERE_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}


def _unknown(body: dict[str, Any], allowed: set[str]) -> list[str]:
    return [f"unknown key {key!r}" for key in body if key not in allowed]


def validate_invoke_body(model_id: str, body: Any) -> list[str]:
    """Problems of an InvokeModel body for an embedding model (empty when valid)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    if "titan-embed-text-v2" in model_id:
        problems = _unknown(body, _TITAN_V2)
        if not isinstance(body.get("inputText"), str) or not body["inputText"]:
            problems.append("inputText: a non-empty string is required")
        if "dimensions" in body and body["dimensions"] not in (256, 512, 1024):
            problems.append("dimensions: one of 256, 512, 1024")
        if "normalize" in body and not isinstance(body["normalize"], bool):
            problems.append("normalize: a boolean")
        return problems
    if "titan-embed-text" in model_id:
        problems = _unknown(body, {"inputText"})
        if not isinstance(body.get("inputText"), str) or not body["inputText"]:
            problems.append("inputText: a non-empty string is required")
        return problems
    if "titan-embed-image" in model_id:
        problems = _unknown(body, _TITAN_IMAGE)
        if "inputText" not in body and "inputImage" not in body:
            problems.append("inputText or inputImage is required")
        length = (body.get("embeddingConfig") or {}).get("outputEmbeddingLength", 1024)
        if length not in (256, 384, 1024):
            problems.append("embeddingConfig.outputEmbeddingLength: one of 256, 384, 1024")
        return problems
    if "cohere.embed" in model_id:
        problems = _unknown(body, _COHERE)
        texts = body.get("texts")
        if not (isinstance(texts, list) and 1 <= len(texts) <= 96 and all(isinstance(t, str) for t in texts)):
            problems.append("texts: 1 to 96 strings")
        if body.get("input_type") not in _COHERE_TYPES:
            problems.append("input_type: required, one of " + ", ".join(sorted(_COHERE_TYPES)))
        if body.get("truncate", "NONE") not in ("NONE", "START", "END"):
            problems.append("truncate: NONE, START or END")
        if "output_dimension" in body and body["output_dimension"] not in (256, 512, 1024, 1536):
            problems.append("output_dimension: one of 256, 512, 1024, 1536")
        return problems
    return [f"{model_id} is not an embedding model"]


def invoke_reply(model_id: str, body: dict[str, Any]) -> Reply:
    """The model's native answer (vectors from `fake_vector`) with the token-count header."""
    if "cohere.embed" in model_id:
        texts = body["texts"]
        size = body.get("output_dimension", 1024)
        tokens = sum(fake_tokens(t) for t in texts)
        payload: dict[str, Any] = {
            "id": "emb-bedrock-1",
            "embeddings": {"float": [fake_vector(t, size) for t in texts]},
            "response_type": "embeddings_by_type",
            "texts": texts,
        }
    else:
        key = body.get("inputText") or body.get("inputImage", "")
        if "image" in model_id:
            size = (body.get("embeddingConfig") or {}).get("outputEmbeddingLength", 1024)
        else:
            size = body.get("dimensions", 1024 if "v2" in model_id else 1536)
        tokens = fake_tokens(key)
        payload = {"embedding": fake_vector(key, size), "inputTextTokenCount": tokens}
    return json_reply(payload, headers={"x-amzn-bedrock-input-token-count": str(tokens)})


def validate_invoke_output(payload: Any, headers: dict[str, str]) -> list[str]:
    """Problems of a native embedding answer: a Titan `embedding` array or Cohere
    `embeddings.float` arrays, and the token-count header."""
    problems = [] if headers.get("x-amzn-bedrock-input-token-count") else ["no token-count header"]
    if not isinstance(payload, dict):
        return [*problems, "the answer is not a JSON object"]
    embeddings = payload.get("embeddings")
    floats = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(payload.get("embedding"), list) and not isinstance(floats, list):
        problems.append("neither `embedding` nor `embeddings.float` is an array")
    return problems
