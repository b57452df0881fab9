"""CohereProvider.embed against the spec-faithful fake (`POST /v2/embed`, validated both ways)."""

from __future__ import annotations

import base64

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.cohere import CohereProvider
from tests.providers.fakes.cohere_upstream import FakeCohere, error_reply
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_texts_with_input_type_and_dimension(
    cohere_provider: CohereProvider, cohere_fake: FakeCohere
) -> None:
    assert isinstance(cohere_provider, EmbeddingProvider)
    request = _request(
        "how do I reset", "password", dimensions=256, input_type=embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY
    )
    response = await cohere_provider.embed(request, CallContext("embed-v4.0"))
    sent = cohere_fake.requests[-1]
    assert sent.path == "/v2/embed"
    assert sent.body == {
        "model": "embed-v4.0",
        "input_type": "search_query",
        "embedding_types": ["float"],
        "truncate": "NONE",
        "texts": ["how do I reset", "password"],
        "output_dimension": 256,
    }
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector("password", 256), abs=1e-7)
    assert response.usage.input_tokens == 5
    assert response.dimensions == 256
    assert response.model == "embed-v4.0"


@pytest.mark.parametrize(
    ("input_type", "wire"),
    [
        (embedding_pb2.EMBEDDING_INPUT_TYPE_UNSPECIFIED, "search_document"),
        (embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT, "search_document"),
        (embedding_pb2.EMBEDDING_INPUT_TYPE_CLASSIFICATION, "classification"),
        (embedding_pb2.EMBEDDING_INPUT_TYPE_CLUSTERING, "clustering"),
    ],
)
async def test_input_types(
    cohere_provider: CohereProvider, cohere_fake: FakeCohere, input_type: int, wire: str
) -> None:
    await cohere_provider.embed(_request("x", input_type=input_type), CallContext("embed-english-v3.0"))
    assert cohere_fake.requests[-1].body["input_type"] == wire


async def test_images_go_as_data_uris_in_inputs(
    cohere_provider: CohereProvider, cohere_fake: FakeCohere
) -> None:
    request = _request("a caption")
    request.inputs.add(image={"mime_type": "image/png", "data": b"\x89PNG-bytes"})
    response = await cohere_provider.embed(request, CallContext("embed-v4.0"))
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    assert cohere_fake.requests[-1].body["inputs"] == [
        {"content": [{"type": "text", "text": "a caption"}]},
        {"content": [{"type": "image_url", "image_url": {"url": uri}}]},
    ]
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector(uri, 1536), abs=1e-7)


async def test_errors_are_mapped(cohere_provider: CohereProvider, cohere_fake: FakeCohere) -> None:
    cohere_fake.enqueue(error_reply(400, "invalid request: too many tokens"))
    with pytest.raises(GatewayError) as info:
        await cohere_provider.embed(_request("x"), CallContext("embed-v4.0"))
    assert info.value.code == Code.INVALID_ARGUMENT


def test_limit_is_96(cohere_provider: CohereProvider) -> None:
    assert cohere_provider.embedding_limits("embed-v4.0").max_inputs == 96
