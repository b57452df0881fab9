"""OllamaProvider.embed against the spec-faithful fake (`POST /api/embed`, validated both ways)."""

from __future__ import annotations

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.ollama import OllamaProvider
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    FakeOllama,
    error_reply,
    ollama_fake_fixture,
    ollama_provider_fixture,
    ollama_settings,
    ollama_upstream_fixture,
)


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_embed_body_and_response(ollama_provider: OllamaProvider, ollama_fake: FakeOllama) -> None:
    assert isinstance(ollama_provider, EmbeddingProvider)
    response = await ollama_provider.embed(
        _request("why is the sky blue", "green grass", dimensions=32, user="u"), CallContext("embeddinggemma")
    )
    sent = ollama_fake.requests[-1]
    assert sent.path == "/api/embed"
    assert sent.body == {
        "model": "embeddinggemma",
        "input": ["why is the sky blue", "green grass"],
        "truncate": False,
        "dimensions": 32,
    }
    assert [e.index for e in response.embeddings] == [0, 1]
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector("green grass", 32), abs=1e-7)
    assert response.dimensions == 32
    assert response.usage.input_tokens == 7
    assert response.model == "embeddinggemma"


async def test_keep_alive_from_the_provider_options(ollama_fake: FakeOllama) -> None:
    provider = OllamaProvider("ollama", ollama_settings(ollama_fake.base_url, options={"keep_alive": 300}))
    try:
        response = await provider.embed(_request("x"), CallContext("nomic-embed-text"))
    finally:
        await provider.aclose()
    assert ollama_fake.requests[-1].body["keep_alive"] == "300s"
    assert response.dimensions == 768


async def test_errors_are_mapped(ollama_provider: OllamaProvider, ollama_fake: FakeOllama) -> None:
    ollama_fake.enqueue(error_reply(400, "input length exceeds the context length"))
    with pytest.raises(GatewayError) as info:
        await ollama_provider.embed(_request("long"), CallContext("embeddinggemma"))
    assert info.value.code == Code.INVALID_ARGUMENT


async def test_images_are_refused_before_any_call(
    ollama_provider: OllamaProvider, ollama_fake: FakeOllama
) -> None:
    request = _request("a")
    request.inputs.add(image={"mime_type": "image/png", "data": b"png"})
    with pytest.raises(GatewayError) as info:
        await ollama_provider.embed(request, CallContext("embeddinggemma"))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert ollama_fake.requests == []
