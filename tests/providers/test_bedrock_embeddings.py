"""BedrockProvider.embed through InvokeModel against the fake (SigV4-checked; Titan and Cohere native
bodies checked against AWS's model-parameter documentation, see fakes/bedrock_embeddings.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.bedrock import BedrockProvider
from tests.providers.fakes.bedrock_upstream import (
    FakeBedrock,
    bedrock_settings,
    checked_fake,
    error_reply,
    running_fake,
)
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of

TITAN_V2 = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_titan_v2_one_text_per_call(provider: BedrockProvider, fake: FakeBedrock) -> None:
    assert isinstance(provider, EmbeddingProvider)
    assert provider.embedding_limits(TITAN_V2).max_inputs == 1
    response = await provider.embed(_request("hello titan", dimensions=256), CallContext(TITAN_V2))
    sent = fake.requests[-1]
    assert sent.path == "/model/amazon.titan-embed-text-v2:0/invoke"
    assert sent.body == {"inputText": "hello titan", "normalize": True, "dimensions": 256}
    assert vector_of(response.embeddings[0]) == pytest.approx(fake_vector("hello titan", 256), abs=1e-7)
    assert response.usage.input_tokens == 2
    assert response.dimensions == 256


async def test_titan_v2_rejects_other_dimensions(provider: BedrockProvider, fake: FakeBedrock) -> None:
    with pytest.raises(GatewayError) as info:
        await provider.embed(_request("x", dimensions=300), CallContext(TITAN_V2))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert fake.requests == []


async def test_cohere_batch_with_input_type(provider: BedrockProvider, fake: FakeBedrock) -> None:
    assert provider.embedding_limits(COHERE).max_inputs == 96
    request = _request("a", "b c", input_type=embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY)
    response = await provider.embed(request, CallContext(COHERE))
    assert fake.requests[-1].body == {
        "texts": ["a", "b c"],
        "input_type": "search_query",
        "truncate": "NONE",
        "embedding_types": ["float"],
    }
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector("b c", 1024), abs=1e-7)
    assert response.usage.input_tokens == 3  # from the X-Amzn-Bedrock-Input-Token-Count header


async def test_titan_multimodal_embeds_an_image(provider: BedrockProvider, fake: FakeBedrock) -> None:
    request = embedding_pb2.EmbedRequest(dimensions=384)
    request.inputs.add(image={"mime_type": "image/png", "data": b"\x89PNG"})
    response = await provider.embed(request, CallContext("amazon.titan-embed-image-v1"))
    encoded = base64.b64encode(b"\x89PNG").decode()
    assert fake.requests[-1].body == {
        "inputImage": encoded,
        "embeddingConfig": {"outputEmbeddingLength": 384},
    }
    assert response.dimensions == 384


async def test_a_chat_model_cannot_embed(provider: BedrockProvider, fake: FakeBedrock) -> None:
    with pytest.raises(GatewayError) as info:
        provider.embedding_limits("anthropic.claude-3-haiku-20240307-v1:0")
    assert info.value.reason == Reason.CAPABILITY_NOT_SUPPORTED


async def test_errors_are_mapped(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(error_reply(400, "ValidationException", "Malformed input request"))
    with pytest.raises(GatewayError) as info:
        await provider.embed(_request("x"), CallContext(TITAN_V2))
    assert info.value.code == Code.INVALID_ARGUMENT
