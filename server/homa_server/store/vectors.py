"""Semantic search storage: collections (per tenant) and their documents, on SQLite or PostgreSQL.

Contract:
    * A collection is addressed by (tenant, name); another tenant's collection is NOT_FOUND, like a
      missing one. Creating an existing name is ALREADY_EXISTS / RESOURCE_ALREADY_EXISTS.
    * Documents are keyed by (collection, id); upsert replaces whole documents, atomically per call,
      and keeps `document_count` and `update_time` of the collection exact.
    * Vectors are stored as packed little-endian float32 bytes and searched EXACTLY with numpy
      (store/vector_search.py): the same bytes give the same scores and the same ranking on both
      engines. pgvector is not used (it is not installed on the servers this runs on); the search
      reads the collection's vectors on every query, which is fine up to ~10^5 documents.
    * Metadata filters run in Python on the decoded JSON (store/vector_filter.py).
    * SQL is SQLAlchemy Core with bound parameters only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from homa_server.errors import Code, GatewayError, Reason, resource_not_found
from homa_server.store.database import Database, now_us
from homa_server.store.filtering import compile_filter
from homa_server.store.records import new_id
from homa_server.store.tables import embedding_collections as collections
from homa_server.store.tables import embedding_documents as documents
from homa_server.store.vector_cache import CachedVectors, VectorCache
from homa_server.store.vector_filter import DocumentPredicate
from homa_server.store.vector_records import (
    COLLECTION_FILTER_FIELDS,
    Match,
    NewCollection,
    NewDocument,
    StoredCollection,
    after_name,
    collection_of,
    next_page_token,
)
from homa_server.store.vector_search import rank, scores

__all__ = ["Match", "NewCollection", "NewDocument", "StoredCollection", "VectorStore"]


class VectorStore:
    """Collections and documents in one database (see the module docstring)."""

    def __init__(self, database: Database, cache: VectorCache | None = None) -> None:
        self._db = database
        self._cache = cache

    async def create(self, new: NewCollection) -> StoredCollection:
        """Store a new collection.

        Raises:
            GatewayError: ALREADY_EXISTS when the tenant has a collection of that name.
        """
        now = now_us()
        stored = StoredCollection(
            **{f: getattr(new, f) for f in NewCollection.__dataclass_fields__},
            collection_id=new_id("col"),
            create_time_us=now,
            update_time_us=now,
        )
        values = {f: getattr(stored, f) for f in StoredCollection.__dataclass_fields__}
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(collections).values(**values))
        except IntegrityError:
            raise GatewayError(
                f"collection {new.name!r} already exists",
                Code.ALREADY_EXISTS,
                Reason.RESOURCE_ALREADY_EXISTS,
                metadata={"resource_type": "collection"},
            ) from None
        return stored

    async def get(self, tenant: str, name: str) -> StoredCollection:
        """The tenant's collection `name`. Raises NOT_FOUND (missing or another tenant's)."""
        query = select(collections).where(collections.c.tenant == tenant, collections.c.name == name)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise resource_not_found("collection", name)
        return collection_of(row)

    async def list_collections(
        self, tenant: str, *, page_size: int, page_token: str = "", filter_text: str = ""
    ) -> tuple[list[StoredCollection], str]:
        """One page of the tenant's collections ordered by name, and the next page token."""
        digest = hashlib.sha256(json.dumps([tenant, filter_text]).encode()).hexdigest()[:16]
        query = select(collections).where(collections.c.tenant == tenant)
        condition = compile_filter(filter_text, COLLECTION_FILTER_FIELDS, labels=collections.c.labels)
        if condition is not None:
            query = query.where(condition)
        if page_token:
            query = query.where(collections.c.name > after_name(page_token, digest))
        query = query.order_by(collections.c.name).limit(page_size + 1)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        found = [collection_of(r) for r in rows[:page_size]]
        token = next_page_token(found[-1].name, digest) if len(rows) > page_size and found else ""
        return found, token

    async def delete(self, tenant: str, name: str) -> int:
        """Delete the collection and its documents; returns the number of documents deleted."""
        async with self._db.begin() as conn:
            row = (
                await conn.execute(
                    select(collections.c.collection_id).where(
                        collections.c.tenant == tenant, collections.c.name == name
                    )
                )
            ).first()
            if row is None:
                raise resource_not_found("collection", name)
            gone = await conn.execute(delete(documents).where(documents.c.collection_id == row[0]))
            await conn.execute(delete(collections).where(collections.c.collection_id == row[0]))
        return int(gone.rowcount or 0)

    async def upsert(self, collection: StoredCollection, docs: Sequence[NewDocument]) -> int:
        """Insert or replace `docs` (ids unique within the call) in one transaction."""
        now = now_us()
        ids = [d.id for d in docs]
        rows = [
            {
                "collection_id": collection.collection_id,
                "document_id": d.id,
                "text": d.text,
                "metadata": d.metadata,
                "vector": np.asarray(d.vector, dtype="<f4").tobytes(),
                "update_time_us": now,
            }
            for d in docs
        ]
        for attempt in range(2):  # a concurrent upsert of the same new id conflicts once at most
            try:
                async with self._db.begin() as conn:
                    await self._lock(conn, collection)
                    replaced = await conn.execute(
                        delete(documents).where(
                            documents.c.collection_id == collection.collection_id,
                            documents.c.document_id.in_(ids),
                        )
                    )
                    await conn.execute(insert(documents), rows)
                    await self._touch(conn, collection, len(rows) - int(replaced.rowcount or 0), now)
                return len(rows)
            except IntegrityError:
                if attempt:
                    raise
        return len(rows)  # pragma: no cover - the loop always returns or raises

    async def delete_documents(
        self,
        collection: StoredCollection,
        *,
        ids: Sequence[str] = (),
        predicate: DocumentPredicate | None = None,
    ) -> int:
        """Delete documents by id, or every document matching `predicate`; returns how many."""
        async with self._db.begin() as conn:
            await self._lock(conn, collection)
            if predicate is not None:
                query = select(documents.c.document_id, documents.c.metadata).where(
                    documents.c.collection_id == collection.collection_id
                )
                ids = [r[0] for r in (await conn.execute(query)).all() if predicate(r[0], r[1] or {})]
            if not ids:
                return 0
            gone = await conn.execute(
                delete(documents).where(
                    documents.c.collection_id == collection.collection_id,
                    documents.c.document_id.in_(list(ids)),
                )
            )
            count = int(gone.rowcount or 0)
            await self._touch(conn, collection, -count, now_us())
        return count

    async def query(
        self,
        collection: StoredCollection,
        vector: npt.NDArray[np.float32],
        *,
        top_k: int,
        predicate: DocumentPredicate | None = None,
        threshold: float | None = None,
        include_text: bool = True,
        include_metadata: bool = True,
        include_vector: bool = False,
    ) -> list[Match]:
        """The `top_k` documents most similar to `vector`, best first (exact search).

        The collection's vectors come from the cache when its entry carries the collection's
        `update_time_us` (store/vector_cache.py), else from one scan of its documents.
        """
        where: ColumnElement[bool] = documents.c.collection_id == collection.collection_id
        loaded = await self._vectors(collection, where)
        if predicate is None:
            ids, metadata, matrix = loaded.ids, loaded.metadata, loaded.matrix
        else:
            keep = [
                i for i, (d, m) in enumerate(zip(loaded.ids, loaded.metadata, strict=True)) if predicate(d, m)
            ]
            ids = [loaded.ids[i] for i in keep]
            metadata = [loaded.metadata[i] for i in keep]
            matrix = loaded.matrix[keep]
        if not ids:
            return []
        values = scores(matrix, np.asarray(vector, dtype=np.float32), collection.distance_metric)
        chosen = rank(ids, values, top_k, threshold)
        texts: dict[str, str] = {}
        if include_text and chosen:
            text_query = select(documents.c.document_id, documents.c.text).where(
                where, documents.c.document_id.in_([ids[i] for i in chosen])
            )
            async with self._db.begin() as conn:
                texts = {r[0]: r[1] for r in (await conn.execute(text_query)).all()}
        return [
            Match(
                id=ids[i],
                score=float(values[i]),
                text=texts.get(ids[i], "") if include_text else None,
                metadata=dict(metadata[i]) if include_metadata else None,
                vector=matrix[i].tolist() if include_vector else None,
            )
            for i in chosen
        ]

    async def _vectors(self, collection: StoredCollection, where: ColumnElement[bool]) -> CachedVectors:
        cached = self._cache.get(collection.collection_id, collection.update_time_us) if self._cache else None
        if cached is not None:
            return cached
        query = select(documents.c.document_id, documents.c.metadata, documents.c.vector).where(where)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(
            len(rows), collection.dimension
        )
        loaded = CachedVectors([r[0] for r in rows], [r[1] or {} for r in rows], matrix)
        if self._cache is not None:
            self._cache.put(collection.collection_id, collection.update_time_us, loaded)
        return loaded

    async def _lock(self, conn: Any, collection: StoredCollection) -> None:
        """Lock the collection row for this transaction (PostgreSQL; SQLite serialises writers)
        and check it still exists."""
        query = select(collections.c.collection_id).where(
            collections.c.collection_id == collection.collection_id
        )
        if self._db.dialect == "postgresql":
            query = query.with_for_update()
        if (await conn.execute(query)).first() is None:
            raise resource_not_found("collection", collection.name)

    @staticmethod
    async def _touch(conn: Any, collection: StoredCollection, delta: int, now: int) -> None:
        await conn.execute(
            update(collections)
            .where(collections.c.collection_id == collection.collection_id)
            .values(document_count=collections.c.document_count + delta, update_time_us=now)
        )

    async def count(self, collection_id: str) -> int:
        """The number of stored documents of a collection (for tests and repair)."""
        query = select(func.count()).select_from(documents).where(documents.c.collection_id == collection_id)
        async with self._db.begin() as conn:
            return int((await conn.execute(query)).scalar_one())
