"""Semantic search on SQLite and PostgreSQL (every test runs on both engines).

Store level: collections per tenant (create, get, list with paging and filters, delete, isolation),
document upsert/replace/delete with exact counts, exact search under each metric with filters and
thresholds (the expected rankings are fixed, so both engines give the same results). End to end:
the local all-MiniLM-L6-v2 model behind a real server returns the expected neighbours on a small
fixed corpus, and tenants (JWT principals) cannot see each other's collections.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from grpc import StatusCode, aio

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa.embedding.v1 import embedding_service_pb2_grpc as embedding_grpc
from homa_server.app import start, stop
from homa_server.errors import Code, GatewayError
from homa_server.store.database import Database
from homa_server.store.tables import embedding_documents
from homa_server.store.vector_cache import CachedVectors, VectorCache
from homa_server.store.vector_filter import compile_document_filter
from homa_server.store.vectors import NewCollection, NewDocument, StoredCollection, VectorStore
from tests.conftest import make_settings, status_details
from tests.unit.auth import AUDIENCE, HMAC_SECRET, ISSUER, hs_signer, make_token

COSINE = embedding_pb2.DISTANCE_METRIC_COSINE
DOT = embedding_pb2.DISTANCE_METRIC_DOT_PRODUCT
EUCLIDEAN = embedding_pb2.DISTANCE_METRIC_EUCLIDEAN


def _collection(
    tenant: str = "acme", name: str = "docs", metric: int = COSINE, **extra: Any
) -> NewCollection:
    return NewCollection(
        tenant=tenant,
        name=name,
        embedding_model="local/all-minilm-l6-v2",
        dimension=3,
        dimensions_param=None,
        distance_metric=metric,
        **extra,
    )


def _doc(doc_id: str, vector: list[float], **metadata: Any) -> NewDocument:
    return NewDocument(doc_id, f"text of {doc_id}", metadata, np.asarray(vector, dtype=np.float32))


CORPUS = [
    _doc("a", [1.0, 0.0, 0.0], lang="en", year=2021, tags=["news"]),
    _doc("b", [0.9, 0.1, 0.0], lang="fr", year=2019, tags=["news", "tech"]),
    _doc("c", [0.0, 1.0, 0.0], lang="en", year=2023, tags=["tech"]),
    _doc("d", [2.0, 0.0, 0.0], lang="en", year=2020),  # same direction as "a", longer
    _doc("e", [-1.0, 0.0, 0.0], lang="de", year=2018),
]


async def _filled(database: Database, metric: int = COSINE) -> tuple[VectorStore, StoredCollection]:
    store = VectorStore(database)
    collection = await store.create(_collection(metric=metric))
    assert await store.upsert(collection, CORPUS) == 5
    return store, collection


async def test_collections_are_per_tenant(database: Database) -> None:
    store = VectorStore(database)
    created = await store.create(_collection(labels={"team": "search"}, description="d"))
    await store.create(_collection(tenant="other"))  # the same name in another tenant is fine
    with pytest.raises(GatewayError) as info:
        await store.create(_collection())
    assert info.value.code == Code.ALREADY_EXISTS
    got = await store.get("acme", "docs")
    assert got == created
    assert got.labels == {"team": "search"}
    with pytest.raises(GatewayError) as missing:
        await store.get("nobody", "docs")
    assert missing.value.code == Code.NOT_FOUND
    assert await store.delete("other", "docs") == 0
    with pytest.raises(GatewayError):
        await store.get("other", "docs")
    assert (await store.get("acme", "docs")).collection_id == created.collection_id


async def test_list_pages_by_name_and_filters(database: Database) -> None:
    store = VectorStore(database)
    for name in ["c3", "a1", "b2", "d4", "e5"]:
        await store.create(_collection(name=name, labels={"team": "x" if name < "c" else "y"}))
    await store.create(_collection(tenant="other", name="a0"))
    names: list[str] = []
    token = ""
    while True:
        page, token = await store.list_collections("acme", page_size=2, page_token=token)
        names += [c.name for c in page]
        if not token:
            break
    assert names == ["a1", "b2", "c3", "d4", "e5"]
    page, _ = await store.list_collections("acme", page_size=10, filter_text='labels.team = "x"')
    assert [c.name for c in page] == ["a1", "b2"]
    with pytest.raises(GatewayError):
        await store.list_collections("acme", page_size=2, page_token="bogus")


async def test_upsert_replaces_and_counts_exactly(database: Database) -> None:
    store, collection = await _filled(database)
    assert (await store.get("acme", "docs")).document_count == 5
    await store.upsert(collection, [_doc("a", [0.0, 0.0, 1.0], lang="it"), _doc("f", [0.0, 0.0, 1.0])])
    after = await store.get("acme", "docs")
    assert after.document_count == 6 == await store.count(collection.collection_id)
    assert after.update_time_us >= collection.update_time_us
    best = await store.query(collection, np.float32([0.0, 0.0, 1.0]), top_k=2)
    assert [(m.id, m.metadata) for m in best] == [("a", {"lang": "it"}), ("f", {})]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (COSINE, ["a", "d", "b", "c", "e"]),  # a and d tie at 1.0: id order
        (DOT, ["d", "a", "b", "c", "e"]),
        (EUCLIDEAN, ["a", "b", "d", "c", "e"]),
    ],
)
async def test_exact_search_under_each_metric(database: Database, metric: int, expected: list[str]) -> None:
    store, collection = await _filled(database, metric)
    matches = await store.query(collection, np.float32([1.0, 0.0, 0.0]), top_k=5, include_vector=True)
    assert [m.id for m in matches] == expected
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    first = matches[0]
    assert first.text == f"text of {first.id}"
    assert first.vector is not None
    if metric == COSINE:
        assert scores[0] == pytest.approx(1.0)
        assert scores[-1] == pytest.approx(-1.0)
    if metric == EUCLIDEAN:
        assert scores[0] == pytest.approx(0.0)


async def test_top_k_threshold_and_filters(database: Database) -> None:
    store, collection = await _filled(database)
    query = np.float32([1.0, 0.0, 0.0])
    assert [m.id for m in await store.query(collection, query, top_k=2)] == ["a", "d"]
    above = await store.query(collection, query, top_k=10, threshold=0.5)
    assert [m.id for m in above] == ["a", "d", "b"]
    english = compile_document_filter('metadata.lang = "en" AND metadata.year >= 2021')
    assert [m.id for m in await store.query(collection, query, top_k=10, predicate=english)] == ["a", "c"]
    tagged = compile_document_filter('metadata.tags:"tech" OR id = "e"')
    assert [m.id for m in await store.query(collection, query, top_k=10, predicate=tagged)] == ["b", "c", "e"]
    bare = await store.query(collection, query, top_k=1, include_text=False, include_metadata=False)
    assert (bare[0].text, bare[0].metadata, bare[0].vector) == (None, None, None)


async def test_delete_documents_by_id_and_filter(database: Database) -> None:
    store, collection = await _filled(database)
    assert await store.delete_documents(collection, ids=["a", "zzz"]) == 1
    old = compile_document_filter("metadata.year < 2020")
    assert await store.delete_documents(collection, predicate=old) == 2  # b (2019), e (2018)
    left = await store.get("acme", "docs")
    assert left.document_count == 2 == await store.count(collection.collection_id)
    assert await store.delete("acme", "docs") == 2
    assert await store.count(collection.collection_id) == 0


# --------------------------------------------------------------------------------------------
# End to end with the local model
# --------------------------------------------------------------------------------------------

FIXED_CORPUS = {
    "cats": "Cats are small domesticated felines that like to sleep and chase mice.",
    "dogs": "Dogs are loyal pets that love walks and playing fetch in the park.",
    "python": "Python is a programming language popular for data science and scripting.",
    "rust": "Rust is a systems programming language focused on memory safety.",
    "paris": "Paris is the capital of France, famous for the Eiffel Tower.",
    "tokyo": "Tokyo is the capital city of Japan and a huge metropolis.",
}


def _token(tenant: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"user-{tenant}",
        "tenant": tenant,
        "exp": now + 300,
        "iat": now,
        "scope": "embeddings:write embeddings:read",
    }
    return make_token({"alg": "HS256", "typ": "JWT"}, claims, hs_signer(HMAC_SECRET))


@pytest.fixture
async def stub(db_url: str) -> AsyncIterator[embedding_grpc.EmbeddingServiceStub]:
    settings = make_settings(
        **{
            "storage.url": db_url,
            "providers": {"local": {"kind": "local", "models": ["all-minilm-l6-v2"]}},
            "auth.mode": "jwt",
            "auth.jwt.issuer": ISSUER,
            "auth.jwt.audiences": [AUDIENCE],
            "auth.jwt.algorithms": ["HS256"],
            "auth.jwt.shared_secret": HMAC_SECRET.decode(),
        }
    )
    gateway, built = await start(settings)
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield embedding_grpc.EmbeddingServiceStub(channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def _auth(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {_token(tenant)}"),)


async def test_semantic_search_returns_the_expected_neighbours(
    stub: embedding_grpc.EmbeddingServiceStub,
) -> None:
    acme = _auth("acme")
    created = await stub.CreateCollection(
        embedding_pb2.CreateCollectionRequest(
            collection=embedding_pb2.Collection(name="kb", embedding_model="all-minilm-l6-v2")
        ),
        metadata=acme,
    )
    assert created.collection.dimension == 384
    assert created.collection.embedding_model == "local/all-minilm-l6-v2"
    assert created.collection.tenant == "acme"
    documents = []
    for doc_id, text in FIXED_CORPUS.items():
        document = embedding_pb2.Document(id=doc_id, text=text)
        document.metadata.update({"kind": "place" if doc_id in ("paris", "tokyo") else "other"})
        documents.append(document)
    upserted = await stub.UpsertDocuments(
        embedding_pb2.UpsertDocumentsRequest(collection="kb", documents=documents), metadata=acme
    )
    assert upserted.upserted_count == 6
    assert upserted.usage.input_tokens > 0
    assert upserted.route.provider == "local"

    async def top(query: str, k: int = 2, **fields: Any) -> list[str]:
        request = embedding_pb2.QueryCollectionRequest(collection="kb", query_text=query, top_k=k, **fields)
        response = await stub.QueryCollection(request, metadata=acme)
        return [m.id for m in response.matches]

    assert await top("Which language should I learn for machine learning?") == ["python", "rust"]
    assert sorted(await top("animals that people keep as pets")) == ["cats", "dogs"]
    assert await top("my puppy wants to play ball", k=1) == ["dogs"]
    assert await top("the Eiffel Tower", k=1) == ["paris"]
    assert await top("capital of Japan", k=1) == ["tokyo"]
    places = await top("programming", k=6, filter='metadata.kind = "place"')
    assert sorted(places) == ["paris", "tokyo"]
    strict = await top("kitten", k=6, score_threshold=0.3)
    assert strict == ["cats"]

    got = await stub.GetCollection(embedding_pb2.GetCollectionRequest(name="kb"), metadata=acme)
    assert got.collection.document_count == 6


async def test_tenants_do_not_see_each_others_collections(stub: embedding_grpc.EmbeddingServiceStub) -> None:
    await stub.CreateCollection(
        embedding_pb2.CreateCollectionRequest(
            collection=embedding_pb2.Collection(name="private", embedding_model="local/all-minilm-l6-v2")
        ),
        metadata=_auth("acme"),
    )
    other = _auth("globex")
    for call in (
        stub.GetCollection(embedding_pb2.GetCollectionRequest(name="private"), metadata=other),
        stub.QueryCollection(
            embedding_pb2.QueryCollectionRequest(collection="private", query_text="x"), metadata=other
        ),
        stub.DeleteCollection(embedding_pb2.DeleteCollectionRequest(name="private"), metadata=other),
    ):
        with pytest.raises(aio.AioRpcError) as info:
            await call
        assert info.value.code() == StatusCode.NOT_FOUND
        assert status_details(info.value)["ErrorInfo"].reason == "RESOURCE_NOT_FOUND"
    listed = await stub.ListCollections(embedding_pb2.ListCollectionsRequest(), metadata=other)
    assert list(listed.collections) == []
    mine = await stub.ListCollections(embedding_pb2.ListCollectionsRequest(), metadata=_auth("acme"))
    assert [c.name for c in mine.collections] == ["private"]


# --------------------------------------------------------------------------------------------
# Document filters (pure functions; no database)
# --------------------------------------------------------------------------------------------

_META = {"lang": "en", "year": 2021, "score": 0.5, "tags": ["news", "tech"], "a": {"b": True}, "none": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('metadata.lang = "en" AND metadata.year >= 2020', True),
        ("metadata.year = 2021.0", True),  # numbers compare numerically
        ('metadata.year = "2021"', False),  # but not with strings
        ('metadata.tags:"news"', True),
        ('metadata.tags:"sports"', False),
        ("metadata.a.b = true", True),
        ("metadata.none = null", True),
        ("metadata.missing:*", False),
        ("metadata.lang:*", True),
        ('metadata.missing != "x"', True),  # != is NOT =
        ('metadata.missing = "x"', False),
        ("metadata.score < 1 AND metadata.score > 0.25", True),
        ('metadata.lang < "fr"', True),  # strings order lexically
        ("metadata.lang < 3", False),  # mixed types never order
        ('NOT metadata.lang = "en" OR id = "doc-1"', True),
        ('(metadata.year < 2000 OR metadata.year > 2020) metadata.lang = "en"', True),
        ('-metadata.lang = "en"', False),
    ],
)
def test_document_filter_semantics(text: str, expected: bool) -> None:
    predicate = compile_document_filter(text)
    assert predicate is not None
    assert predicate("doc-1", _META) is expected


@pytest.mark.parametrize(
    "text",
    ["metadata.lang =", "lang = 1", 'metadata.lang = "en" )', "(((", "metadata. = 1", "id ~ 3", "x" * 3000],
)
def test_invalid_document_filters_are_invalid_argument(text: str) -> None:
    with pytest.raises(GatewayError) as info:
        compile_document_filter(text)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["filter"]


def test_empty_filter_is_none() -> None:
    assert compile_document_filter("  ") is None


async def test_queries_reuse_cached_vectors_until_the_collection_changes(database: Database) -> None:
    cache = VectorCache()
    store = VectorStore(database, cache)
    collection = await store.create(_collection())
    await store.upsert(collection, CORPUS)
    current = await store.get("acme", "docs")
    query = np.float32([1.0, 0.0, 0.0])
    first = await store.query(current, query, top_k=2)
    assert cache.get(current.collection_id, current.update_time_us) is not None
    async with database.begin() as conn:  # behind the store's back: the cache still answers
        await conn.execute(sa.delete(embedding_documents))
    assert [m.id for m in await store.query(current, query, top_k=2, include_text=False)] == [
        m.id for m in first
    ]
    await store.upsert(collection, [_doc("z", [1.0, 0.0, 0.0])])  # a write bumps update_time
    changed = await store.get("acme", "docs")
    assert changed.update_time_us != current.update_time_us
    assert [m.id for m in await store.query(changed, query, top_k=5)] == ["z"]


def test_the_cache_is_bounded_by_bytes() -> None:
    cache = VectorCache(max_bytes=10_000)
    one = CachedVectors(["a"], [{}], np.zeros((1, 1000), dtype=np.float32))  # ~4 KB
    for name in ("c1", "c2", "c3"):
        cache.put(name, 1, one)
    assert cache.get("c1", 1) is None  # the oldest went first
    assert cache.get("c3", 1) is one
    assert cache.get("c3", 2) is None  # another stamp is a miss
