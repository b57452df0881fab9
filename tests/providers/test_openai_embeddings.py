"""OpenAIProvider.embed against the spec-faithful fake: wire body (validated by the fake against the
OpenAI spec), float and base64 decoding, order, usage, limits and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.openai import OpenAIProvider
from homa_server.settings import ProviderSettings
from tests.providers.fakes.embedding_vectors import fake_vector, vector_of
from tests.providers.fakes.openai_upstream import FakeOpenAI, error_reply, json_reply


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(**fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


@pytest.fixture
async def provider(openai_fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    adapter = OpenAIProvider(
        "openai", ProviderSettings(kind="openai", base_url=openai_fake.base_url, api_key="sk-test-emb")
    )
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def test_embeds_in_order_with_base64_on_the_wire(
    provider: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    assert isinstance(provider, EmbeddingProvider)
    response = await provider.embed(
        _request("alpha beta", "gamma", dimensions=8, user="u-1"), CallContext("text-embedding-3-small")
    )
    sent = openai_fake.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": ["alpha beta", "gamma"],
        "encoding_format": "base64",
        "dimensions": 8,
        "user": "u-1",
    }
    assert [e.index for e in response.embeddings] == [0, 1]
    assert vector_of(response.embeddings[0]) == pytest.approx(fake_vector("alpha beta", 8), abs=1e-7)
    assert vector_of(response.embeddings[1]) == pytest.approx(fake_vector("gamma", 8), abs=1e-7)
    assert response.dimensions == 8
    assert response.model == "text-embedding-3-small"
    assert response.usage.input_tokens == 3


async def test_compatible_servers_get_float_encoding(openai_fake: FakeOpenAI) -> None:
    adapter = OpenAIProvider(
        "vllm", ProviderSettings(kind="openai_compatible", base_url=openai_fake.base_url, api_key="sk-x")
    )
    try:
        response = await adapter.embed(_request("one"), CallContext("text-embedding-3-large"))
    finally:
        await adapter.aclose()
    assert openai_fake.requests[-1].body["encoding_format"] == "float"
    assert response.dimensions == 3072
    assert vector_of(response.embeddings[0]) == pytest.approx(fake_vector("one", 3072), abs=1e-7)


async def test_extra_body_is_merged_and_adapter_fields_win(
    provider: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    request = _request("x")
    request.extra_body.update({"model": "ignored", "encoding_format": "float"})
    await provider.embed(request, CallContext("text-embedding-3-small"))
    body = openai_fake.requests[-1].body
    assert body["model"] == "text-embedding-3-small"
    assert body["encoding_format"] == "base64"


async def test_out_of_order_data_is_put_back_in_input_order(
    provider: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    data = [
        {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
        {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
    ]
    openai_fake.enqueue(
        json_reply(
            {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
        )
    )
    response = await provider.embed(_request("a", "b"), CallContext("text-embedding-3-small"))
    assert [vector_of(e) for e in response.embeddings] == [[1.0, 0.0], [0.0, 1.0]]


async def test_a_wrong_number_of_vectors_is_a_protocol_error(
    provider: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    data = [{"object": "embedding", "index": 0, "embedding": [1.0]}]
    openai_fake.enqueue(
        json_reply(
            {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
        )
    )
    with pytest.raises(GatewayError) as info:
        await provider.embed(_request("a", "b"), CallContext("text-embedding-3-small"))
    assert info.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_upstream_errors_are_mapped(provider: OpenAIProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(
        error_reply(400, "This model does not support specifying dimensions.", param="dimensions")
    )
    with pytest.raises(GatewayError) as info:
        await provider.embed(_request("a", dimensions=4), CallContext("text-embedding-ada-002"))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.reason == Reason.UPSTREAM_INVALID_REQUEST


async def test_images_are_refused_before_any_call(provider: OpenAIProvider, openai_fake: FakeOpenAI) -> None:
    request = _request("a")
    request.inputs.add(image={"mime_type": "image/png", "data": b"png"})
    with pytest.raises(GatewayError) as info:
        await provider.embed(request, CallContext("text-embedding-3-small"))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["inputs[1].image"]
    assert openai_fake.requests == []


def test_batch_size_option_is_capped_at_openais_limit() -> None:
    small = OpenAIProvider(
        "c", ProviderSettings(kind="openai_compatible", options={"embedding_batch_size": 16})
    )
    large = OpenAIProvider("o", ProviderSettings(kind="openai", options={"embedding_batch_size": 99999}))
    assert small.embedding_limits("m").max_inputs == 16
    assert large.embedding_limits("m").max_inputs == 2048
