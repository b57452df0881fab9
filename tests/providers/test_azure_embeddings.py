"""AzureOpenAIProvider.embed against the spec-faithful fake (the deployment's embeddings path with
api-version, validated both ways with Azure's own spec)."""

from __future__ import annotations

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import GatewayError
from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.base import CallContext, EmbeddingProvider
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import FakeAzure, azure_settings, error_reply
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_deployment_path_and_body(azure_fake: FakeAzure) -> None:
    provider = AzureOpenAIProvider(
        "azure", azure_settings(azure_fake.base_url, deployments={"small": "emb-small-prod"})
    )
    try:
        assert isinstance(provider, EmbeddingProvider)
        response = await provider.embed(_request("azure text", dimensions=24), CallContext("small"))
    finally:
        await provider.aclose()
    sent = azure_fake.requests[-1]
    assert sent.path == "/openai/deployments/emb-small-prod/embeddings"
    assert sent.query["api-version"]
    assert sent.headers["api-key"]
    assert sent.body == {"input": ["azure text"], "encoding_format": "float", "dimensions": 24}
    assert vector_of(response.embeddings[0]) == pytest.approx(fake_vector("azure text", 24), abs=1e-7)
    assert response.usage.input_tokens == 2


async def test_errors_are_mapped(azure_fake: FakeAzure) -> None:
    provider = AzureOpenAIProvider("azure", azure_settings(azure_fake.base_url))
    azure_fake.enqueue(
        error_reply(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
    )
    try:
        with pytest.raises(GatewayError) as info:
            await provider.embed(_request("x"), CallContext("missing"))
    finally:
        await provider.aclose()
    assert info.value.metadata.get("provider") == "azure"
