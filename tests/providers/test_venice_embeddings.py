"""VeniceProvider.embed against the spec-faithful fake (`POST /embeddings`, validated both ways)."""

from __future__ import annotations

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.venice import VeniceProvider
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of
from tests.providers.fakes.venice_upstream import FakeVenice, error_reply
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_provider_fixture as _venice_provider  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_openai_format_with_float_vectors(
    venice_provider: VeniceProvider, venice_fake: FakeVenice
) -> None:
    assert isinstance(venice_provider, EmbeddingProvider)
    response = await venice_provider.embed(
        _request("private ai", "no logs", dimensions=12, user="u1"), CallContext("text-embedding-bge-m3")
    )
    sent = venice_fake.requests[-1]
    assert sent.path == "/api/v1/embeddings"
    assert sent.body == {
        "model": "text-embedding-bge-m3",
        "input": ["private ai", "no logs"],
        "encoding_format": "float",
        "dimensions": 12,
        "user": "u1",
    }
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector("no logs", 12), abs=1e-7)
    assert response.usage.input_tokens == 4
    assert response.dimensions == 12


async def test_native_dimension(venice_provider: VeniceProvider, venice_fake: FakeVenice) -> None:
    response = await venice_provider.embed(_request("x"), CallContext("text-embedding-bge-m3"))
    assert response.dimensions == 1024


async def test_errors_are_mapped(venice_provider: VeniceProvider, venice_fake: FakeVenice) -> None:
    venice_fake.enqueue(error_reply(400, "Invalid request parameters"))
    with pytest.raises(GatewayError) as info:
        await venice_provider.embed(_request("x"), CallContext("text-embedding-bge-m3"))
    assert info.value.code == Code.INVALID_ARGUMENT
