"""GeminiProvider.embed against the spec-faithful fake (`batchEmbedContents`, checked with the
pinned proto types and the discovery document, both ways)."""

from __future__ import annotations

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.gemini import GeminiProvider
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    FakeGemini,
    error_reply,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_upstream_fixture,
)


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_batch_body_and_response(gemini_provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    assert isinstance(gemini_provider, EmbeddingProvider)
    request = _request(
        "what is a gateway",
        "a gateway routes calls",
        dimensions=64,
        input_type=embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT,
    )
    response = await gemini_provider.embed(request, CallContext("text-embedding-004"))
    sent = gemini_fake.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    config = {"autoTruncate": False, "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 64}
    assert sent.body == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": t}]},
                "embedContentConfig": config,
            }
            for t in ("what is a gateway", "a gateway routes calls")
        ]
    }
    assert vector_of(response.embeddings[0]) == pytest.approx(fake_vector("what is a gateway", 64), abs=1e-7)
    assert response.dimensions == 64
    assert response.usage.input_tokens == 8
    assert response.model == "text-embedding-004"


async def test_query_task_type_and_native_size(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    request = _request("q", input_type=embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY)
    response = await gemini_provider.embed(request, CallContext("text-embedding-004"))
    config = gemini_fake.requests[-1].body["requests"][0]["embedContentConfig"]
    assert config == {"autoTruncate": False, "taskType": "RETRIEVAL_QUERY"}
    assert response.dimensions == 768


async def test_errors_are_mapped(gemini_provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.enqueue(error_reply(400, "Request payload size exceeds the limit", "INVALID_ARGUMENT"))
    with pytest.raises(GatewayError) as info:
        await gemini_provider.embed(_request("x"), CallContext("text-embedding-004"))
    assert info.value.code == Code.INVALID_ARGUMENT


async def test_images_are_refused(gemini_provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    request = _request("a")
    request.inputs.add(image={"mime_type": "image/png", "data": b"png"})
    with pytest.raises(GatewayError) as info:
        await gemini_provider.embed(request, CallContext("text-embedding-004"))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert gemini_fake.requests == []
