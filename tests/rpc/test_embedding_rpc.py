"""EmbeddingService.Embed end to end: the local model and the fake OpenAI behind a real server,
validation errors with details, big batches split to provider limits and run concurrently with
order kept, base64 encoding, usage recording."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa
from grpc import StatusCode, aio

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa.embedding.v1 import embedding_service_pb2_grpc as embedding_grpc
from homa_server.app import start, stop
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.settings import ProviderSettings
from homa_server.store.tables import usage_records
from tests.conftest import make_settings, status_details
from tests.providers.fakes.embedding_vectors import fake_vector
from tests.providers.fakes.openai_upstream import FakeOpenAI

HELLO_WORLD_PREFIX = [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362]


class SlowEchoProvider:
    """An embedding provider whose chunks finish in reverse order (to test ordering and limits)."""

    kind = "slow_echo"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.in_flight = 0
        self.peak = 0
        self.calls: list[int] = []

    async def aclose(self) -> None:
        return None

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        return EmbeddingLimits(max_inputs=4, max_concurrency=2)

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.calls.append(len(request.inputs))
        first = int(request.inputs[0].text) if request.inputs[0].text.isdigit() else 1
        try:
            await asyncio.sleep(0.02 if first % 8 == 0 else 0.0)  # every other chunk is slower
        finally:
            self.in_flight -= 1
        response = embedding_pb2.EmbedResponse(model=ctx.model, dimensions=1)
        response.usage.input_tokens = len(request.inputs)
        for i, item in enumerate(request.inputs):
            response.embeddings.add(index=i, values=[float(item.text) if item.text.isdigit() else 1.0])
        return response


@dataclass
class Served:
    stub: embedding_grpc.EmbeddingServiceStub
    gateway: object


@pytest.fixture
async def served(openai_fake: FakeOpenAI) -> AsyncIterator[Served]:
    settings = make_settings(
        providers={
            "mock": {"kind": "mock"},
            "local": {"kind": "local", "models": ["all-minilm-l6-v2"], "options": {"batch_size": 8}},
            "openai": {
                "kind": "openai",
                "base_url": openai_fake.base_url,
                "api_key": "sk-test-embed-rpc",
                "options": {"embedding_batch_size": 3},
            },
            "slow": {"kind": "slow_echo"},
        }
    )
    gateway, built = await start(settings, {**BUILTIN_KINDS, "slow_echo": SlowEchoProvider})
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield Served(embedding_grpc.EmbeddingServiceStub(channel), gateway)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _request(model: str, *texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(model=model, **fields)  # type: ignore[arg-type]
    request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
    return request


async def test_local_model_through_the_gateway(served: Served) -> None:
    response = await served.stub.Embed(_request("all-minilm-l6-v2", "hello world", "flag embedding"))
    assert response.dimensions == 384
    assert [e.index for e in response.embeddings] == [0, 1]
    assert list(response.embeddings[0].values[:5]) == pytest.approx(HELLO_WORLD_PREFIX, abs=2e-5)
    assert response.usage.input_tokens == 10
    assert (response.route.provider, response.route.model) == ("local", "all-minilm-l6-v2")


async def test_local_batches_are_split_and_keep_order(served: Served) -> None:
    texts = [f"sentence number {i} about topic {i % 5}" for i in range(29)]  # 4 chunks of <= 8
    whole = await served.stub.Embed(_request("local/all-minilm-l6-v2", *texts))
    assert [e.index for e in whole.embeddings] == list(range(29))
    single = await served.stub.Embed(_request("local/all-minilm-l6-v2", texts[17]))
    np.testing.assert_allclose(whole.embeddings[17].values, single.embeddings[0].values, atol=1e-5)


async def test_base64_encoding_packs_little_endian_float32(served: Served) -> None:
    floats = await served.stub.Embed(_request("local/all-minilm-l6-v2", "packed vectors"))
    packed = await served.stub.Embed(
        _request("local/all-minilm-l6-v2", "packed vectors", encoding=embedding_pb2.EMBEDDING_ENCODING_BASE64)
    )
    item = packed.embeddings[0]
    assert list(item.values) == []
    assert len(item.packed) == 384 * 4
    np.testing.assert_array_equal(
        np.frombuffer(item.packed, dtype="<f4"), np.float32(floats.embeddings[0].values)
    )


async def test_openai_split_to_the_configured_batch_size(served: Served, openai_fake: FakeOpenAI) -> None:
    texts = [f"text {i}" for i in range(10)]
    response = await served.stub.Embed(_request("openai/text-embedding-3-small", *texts, dimensions=16))
    bodies = [r.body for r in openai_fake.requests if r.path == "/v1/embeddings"]
    assert sorted(len(b["input"]) for b in bodies) == [1, 3, 3, 3]
    assert all(b["dimensions"] == 16 for b in bodies)
    for i, item in enumerate(response.embeddings):
        assert item.index == i
        assert list(item.values) == pytest.approx(fake_vector(texts[i], 16), abs=1e-7)
    assert response.usage.input_tokens == 20
    assert response.dimensions == 16


async def test_chunks_run_concurrently_within_the_limit_and_keep_order(served: Served) -> None:
    texts = [str(i) for i in range(18)]
    response = await served.stub.Embed(_request("slow/any", *texts))
    assert [e.values[0] for e in response.embeddings] == [float(i) for i in range(18)]
    assert [e.index for e in response.embeddings] == list(range(18))
    provider = served.gateway.registry.get("slow")  # type: ignore[attr-defined]
    assert sorted(provider.calls) == [2, 4, 4, 4, 4]
    assert provider.peak == 2
    assert response.usage.input_tokens == 18


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (_request("local/all-minilm-l6-v2"), ["inputs"]),
        (_request("local/all-minilm-l6-v2", "ok", " "), ["inputs[1].text"]),
        (_request("local/all-minilm-l6-v2", *["x"] * 2049), ["inputs"]),
        (_request("local/all-minilm-l6-v2", "ok", dimensions=0), ["dimensions"]),
        (_request("local/all-minilm-l6-v2", "ok", dimensions=128), ["dimensions"]),
        (_request("local/all-minilm-l6-v2", "ok", encoding=7), ["encoding"]),  # type: ignore[arg-type]
    ],
)
async def test_invalid_requests_are_invalid_argument_with_details(
    served: Served, request_: embedding_pb2.EmbedRequest, fields: list[str]
) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Embed(request_)
    assert info.value.code() == StatusCode.INVALID_ARGUMENT
    details = status_details(info.value)
    assert [v.field for v in details["BadRequest"].field_violations] == fields


async def test_a_chat_only_provider_cannot_embed(served: Served) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Embed(_request("mock/echo", "hi"))
    assert info.value.code() == StatusCode.FAILED_PRECONDITION
    assert status_details(info.value)["ErrorInfo"].reason == "CAPABILITY_NOT_SUPPORTED"


async def test_usage_is_recorded_per_call(served: Served) -> None:
    await served.stub.Embed(_request("local/all-minilm-l6-v2", "hello world"))
    gateway = served.gateway
    await gateway.outbox.flush()  # type: ignore[attr-defined]
    async with gateway.db.session() as session:  # type: ignore[attr-defined]
        rows = (
            await session.execute(sa.select(usage_records).where(usage_records.c.method == "embedding.Embed"))
        ).all()
    assert len(rows) == 1
    row = rows[0]._mapping
    assert (row["model"], row["provider"], row["input_tokens"], row["status"]) == (
        "local/all-minilm-l6-v2",
        "local",
        4,
        "completed",
    )


# --------------------------------------------------------------------------------------------
# Collections: requests checked before any work, dimensions passed through to the provider
# --------------------------------------------------------------------------------------------


async def _create(
    served: Served, name: str, model: str, dimension: int | None = None
) -> embedding_pb2.Collection:
    collection = embedding_pb2.Collection(name=name, embedding_model=model)
    if dimension is not None:
        collection.dimension = dimension
    response = await served.stub.CreateCollection(
        embedding_pb2.CreateCollectionRequest(collection=collection)
    )
    return response.collection


async def test_collection_dimensions_reach_the_provider(served: Served, openai_fake: FakeOpenAI) -> None:
    created = await _create(served, "small", "openai/text-embedding-3-small", 16)
    assert created.dimension == 16
    assert created.embedding_model == "openai/text-embedding-3-small"
    document = embedding_pb2.Document(id="d1", text="alpha")
    await served.stub.UpsertDocuments(
        embedding_pb2.UpsertDocumentsRequest(collection="small", documents=[document])
    )
    bodies = [r.body for r in openai_fake.requests if r.path == "/v1/embeddings"]
    assert [b["dimensions"] for b in bodies] == [16, 16]
    query = embedding_pb2.QueryCollectionRequest(
        collection="small", query_vector=fake_vector("alpha", 16), include_vector=True
    )
    found = await served.stub.QueryCollection(query)
    assert [m.id for m in found.matches] == ["d1"]
    assert found.matches[0].score == pytest.approx(1.0, abs=1e-6)
    assert list(found.matches[0].vector) == pytest.approx(fake_vector("alpha", 16), abs=1e-7)
    assert found.usage.input_tokens == 0
    assert not found.HasField("route")


async def test_precomputed_vectors_are_stored_without_embedding(served: Served) -> None:
    await _create(served, "pre", "slow/any")  # the slow echo provider returns 1-dimensional vectors
    documents = [embedding_pb2.Document(id=f"v{i}", text=f"t{i}", vector=[float(i)]) for i in range(1, 4)]
    response = await served.stub.UpsertDocuments(
        embedding_pb2.UpsertDocumentsRequest(collection="pre", documents=documents)
    )
    assert response.upserted_count == 3
    assert not response.HasField("route")
    provider = served.gateway.registry.get("slow")  # type: ignore[attr-defined]
    assert provider.calls == [1]  # only the creation probe
    deleted = await served.stub.DeleteDocuments(
        embedding_pb2.DeleteDocumentsRequest(collection="pre", filter='id = "v2" OR id = "v3"')
    )
    assert deleted.deleted_count == 2
    gone = await served.stub.DeleteCollection(embedding_pb2.DeleteCollectionRequest(name="pre"))
    assert gone.deleted_document_count == 1


async def _invalid(call: object) -> list[str]:
    with pytest.raises(aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == StatusCode.INVALID_ARGUMENT
    return [v.field for v in status_details(info.value)["BadRequest"].field_violations]


async def test_collection_requests_are_validated(served: Served) -> None:
    stub = served.stub
    bad_name = embedding_pb2.Collection(name="Bad Name", embedding_model="local/all-minilm-l6-v2")
    assert await _invalid(
        stub.CreateCollection(embedding_pb2.CreateCollectionRequest(collection=bad_name))
    ) == ["collection.name"]
    await _create(served, "vec", "slow/any")
    twice = [embedding_pb2.Document(id="x", text="a"), embedding_pb2.Document(id="x", text="b")]
    assert await _invalid(
        stub.UpsertDocuments(embedding_pb2.UpsertDocumentsRequest(collection="vec", documents=twice))
    ) == ["documents[1].id"]
    wrong = [embedding_pb2.Document(id="x", vector=[1.0, 2.0])]
    assert await _invalid(
        stub.UpsertDocuments(embedding_pb2.UpsertDocumentsRequest(collection="vec", documents=wrong))
    ) == ["documents[0].vector"]
    assert await _invalid(
        stub.QueryCollection(embedding_pb2.QueryCollectionRequest(collection="vec", query_vector=[1.0, 2.0]))
    ) == ["query_vector"]
    assert await _invalid(
        stub.QueryCollection(
            embedding_pb2.QueryCollectionRequest(collection="vec", query_text="x", filter="oops")
        )
    ) == ["filter"]
    assert await _invalid(
        stub.DeleteDocuments(
            embedding_pb2.DeleteDocumentsRequest(collection="vec", ids=["a"], filter='id = "a"')
        )
    ) == ["ids", "filter"]
    with pytest.raises(aio.AioRpcError) as info:
        await stub.CreateCollection(
            embedding_pb2.CreateCollectionRequest(
                collection=embedding_pb2.Collection(name="vec", embedding_model="slow/any")
            )
        )
    assert info.value.code() == StatusCode.ALREADY_EXISTS
    with pytest.raises(aio.AioRpcError) as missing:
        await stub.GetCollection(embedding_pb2.GetCollectionRequest(name="nope"))
    assert missing.value.code() == StatusCode.NOT_FOUND
