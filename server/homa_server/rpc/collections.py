"""EmbeddingService servicer, semantic-search part: collections and their documents.

Every RPC works inside the caller's tenant (`Principal.tenant`): a collection of another tenant is
NOT_FOUND like a missing one. Documents and queries are embedded with the collection's model
through the embedding dispatcher (routing/embedding.py), documents as EMBEDDING_INPUT_TYPE_DOCUMENT
and queries as EMBEDDING_INPUT_TYPE_QUERY. CreateCollection embeds one probe text to learn (or
check) the model's dimension, so a collection never stores vectors of the wrong size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import timestamp_pb2
from grpc import aio

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.auth.tenancy import current_principal
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.routing.embedding import EmbeddedTexts, EmbeddingDispatcher
from homa_server.rpc.embedding import request_id
from homa_server.store.vector_cache import VectorCache
from homa_server.store.vector_filter import compile_document_filter
from homa_server.store.vectors import NewCollection, NewDocument, StoredCollection, VectorStore
from homa_server.validation.collections import (
    check_collection,
    check_delete_documents,
    check_documents,
    check_name,
    check_query,
    metadata_dict,
    top_k,
)

if TYPE_CHECKING:
    from homa_server.app import Gateway

Context = aio.ServicerContext[Any, Any]

_DOCUMENT = embedding_pb2.EMBEDDING_INPUT_TYPE_DOCUMENT
_QUERY = embedding_pb2.EMBEDDING_INPUT_TYPE_QUERY
_PROBE = "dimension probe"
_DEFAULT_PAGE = 50
_MAX_PAGE = 1000


def _time(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def collection_proto(stored: StoredCollection) -> embedding_pb2.Collection:
    """The API view of a stored collection."""
    return embedding_pb2.Collection(
        name=stored.name,
        description=stored.description,
        embedding_model=stored.embedding_model,
        dimension=stored.dimension,
        distance_metric=stored.distance_metric,  # type: ignore[arg-type]
        labels=stored.labels,
        document_count=stored.document_count,
        tenant=stored.tenant,
        create_time=_time(stored.create_time_us),
        update_time=_time(stored.update_time_us),
    )


def _wrong_dimension(model: str, got: int, want: int) -> GatewayError:
    return GatewayError(
        f"{model} returned {got}-dimensional vectors; the collection holds {want}",
        Code.FAILED_PRECONDITION,
        Reason.CAPABILITY_NOT_SUPPORTED,
        metadata={"model": model},
    )


class CollectionServicer:
    """Implements the collection and document RPCs of homa.embedding.v1.EmbeddingService."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._dispatcher = EmbeddingDispatcher(gateway.resolver, gateway.outbox)
        self._vectors: VectorStore | None = None
        self._cache = VectorCache()  # this process's decoded vectors, checked by update_time

    @property
    def _store(self) -> VectorStore:
        if self._vectors is None:
            self._vectors = VectorStore(self._gateway.db, self._cache)
        return self._vectors

    async def _embed(
        self, collection: StoredCollection, texts: list[str], kind: int, user: str, context: Context
    ) -> EmbeddedTexts:
        embedded = await self._dispatcher.embed_texts(
            collection.embedding_model,
            texts,
            input_type=kind,  # type: ignore[arg-type]
            dimensions=collection.dimensions_param,
            user=user,
            remaining=context.time_remaining(),
            request_id=request_id(),
        )
        if embedded.vectors.shape[1] != collection.dimension:
            raise _wrong_dimension(
                collection.embedding_model, embedded.vectors.shape[1], collection.dimension
            )
        return embedded

    async def CreateCollection(
        self, request: embedding_pb2.CreateCollectionRequest, context: Context
    ) -> embedding_pb2.CreateCollectionResponse:
        wanted = request.collection
        check_collection(wanted)
        tenant = current_principal().tenant
        target, provider = self._dispatcher.resolve(wanted.embedding_model)
        model = f"{provider.name}/{target.model}"
        param = wanted.dimension if wanted.HasField("dimension") else None
        probe = await self._dispatcher.embed_texts(
            model,
            [_PROBE],
            input_type=_DOCUMENT,
            dimensions=param,
            remaining=context.time_remaining(),
            request_id=request_id(),
        )
        dimension = int(probe.vectors.shape[1])
        if param is not None and dimension != param:
            raise invalid_field(
                "collection.dimension", f"{model} returns {dimension} dimensions, not {param}"
            )
        stored = await self._store.create(
            NewCollection(
                tenant=tenant,
                name=wanted.name,
                embedding_model=model,
                dimension=dimension,
                dimensions_param=param,
                distance_metric=wanted.distance_metric or embedding_pb2.DISTANCE_METRIC_COSINE,
                description=wanted.description,
                labels=dict(wanted.labels),
            )
        )
        return embedding_pb2.CreateCollectionResponse(collection=collection_proto(stored))

    async def GetCollection(
        self, request: embedding_pb2.GetCollectionRequest, context: Context
    ) -> embedding_pb2.GetCollectionResponse:
        stored = await self._store.get(current_principal().tenant, check_name(request.name))
        return embedding_pb2.GetCollectionResponse(collection=collection_proto(stored))

    async def ListCollections(
        self, request: embedding_pb2.ListCollectionsRequest, context: Context
    ) -> embedding_pb2.ListCollectionsResponse:
        if request.page_size < 0:
            raise invalid_field("page_size", "must not be negative")
        found, token = await self._store.list_collections(
            current_principal().tenant,
            page_size=min(request.page_size or _DEFAULT_PAGE, _MAX_PAGE),
            page_token=request.page_token,
            filter_text=request.filter,
        )
        return embedding_pb2.ListCollectionsResponse(
            collections=[collection_proto(c) for c in found], next_page_token=token
        )

    async def DeleteCollection(
        self, request: embedding_pb2.DeleteCollectionRequest, context: Context
    ) -> embedding_pb2.DeleteCollectionResponse:
        deleted = await self._store.delete(current_principal().tenant, check_name(request.name))
        return embedding_pb2.DeleteCollectionResponse(deleted_document_count=deleted)

    async def UpsertDocuments(
        self, request: embedding_pb2.UpsertDocumentsRequest, context: Context
    ) -> embedding_pb2.UpsertDocumentsResponse:
        collection = await self._store.get(
            current_principal().tenant, check_name(request.collection, "collection")
        )
        docs = list(request.documents)
        check_documents(docs, collection.dimension)
        response = embedding_pb2.UpsertDocumentsResponse()
        pending = [i for i, d in enumerate(docs) if not d.vector]
        vectors: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}
        if pending:
            embedded = await self._embed(
                collection, [docs[i].text for i in pending], _DOCUMENT, request.user, context
            )
            vectors = dict(zip(pending, embedded.vectors, strict=True))
            response.usage.CopyFrom(embedded.usage)
            response.route.CopyFrom(embedded.route)
        new = [
            NewDocument(
                id=d.id,
                text=d.text,
                metadata=metadata_dict(d),
                vector=vectors[i] if i in vectors else np.asarray(d.vector, dtype=np.float32),
            )
            for i, d in enumerate(docs)
        ]
        response.upserted_count = await self._store.upsert(collection, new)
        return response

    async def QueryCollection(
        self, request: embedding_pb2.QueryCollectionRequest, context: Context
    ) -> embedding_pb2.QueryCollectionResponse:
        collection = await self._store.get(
            current_principal().tenant, check_name(request.collection, "collection")
        )
        check_query(request, collection.dimension)
        predicate = compile_document_filter(request.filter)
        response = embedding_pb2.QueryCollectionResponse()
        if request.query_vector:
            vector = np.asarray(request.query_vector, dtype=np.float32)
        else:
            embedded = await self._embed(collection, [request.query_text], _QUERY, request.user, context)
            vector = embedded.vectors[0]
            response.usage.CopyFrom(embedded.usage)
            response.route.CopyFrom(embedded.route)
        matches = await self._store.query(
            collection,
            vector,
            top_k=top_k(request),
            predicate=predicate,
            threshold=request.score_threshold if request.HasField("score_threshold") else None,
            include_text=request.include_text if request.HasField("include_text") else True,
            include_metadata=request.include_metadata if request.HasField("include_metadata") else True,
            include_vector=request.include_vector,
        )
        for match in matches:
            item = response.matches.add(id=match.id, score=match.score)
            if match.text is not None:
                item.text = match.text
            if match.metadata is not None:
                item.metadata.update(match.metadata)
            if match.vector is not None:
                item.vector.extend(match.vector)
        return response

    async def DeleteDocuments(
        self, request: embedding_pb2.DeleteDocumentsRequest, context: Context
    ) -> embedding_pb2.DeleteDocumentsResponse:
        check_delete_documents(request)
        collection = await self._store.get(
            current_principal().tenant, check_name(request.collection, "collection")
        )
        if request.ids:
            deleted = await self._store.delete_documents(collection, ids=list(request.ids))
        else:
            predicate = compile_document_filter(request.filter)
            deleted = await self._store.delete_documents(collection, predicate=predicate)
        return embedding_pb2.DeleteDocumentsResponse(deleted_count=deleted)
