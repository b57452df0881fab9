"""Records of semantic-search storage and their row mapping (used by store/vectors.py).

`NewCollection` / `StoredCollection` (one row of `embedding_collections`), `NewDocument` (what an
upsert writes), `Match` (a query result), the filter fields of ListCollections, and the opaque
page tokens of the name-ordered collection listing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Row

from homa_server.errors import invalid_field
from homa_server.store.filtering import FilterField
from homa_server.store.tables import embedding_collections as collections

__all__ = [
    "COLLECTION_FILTER_FIELDS",
    "Match",
    "NewCollection",
    "NewDocument",
    "StoredCollection",
    "after_name",
    "collection_of",
    "next_page_token",
]

COLLECTION_FILTER_FIELDS: Mapping[str, FilterField] = {
    "name": FilterField(collections.c.name),
    "description": FilterField(collections.c.description),
    "embedding_model": FilterField(collections.c.embedding_model),
    "dimension": FilterField(collections.c.dimension, kind="int"),
    "document_count": FilterField(collections.c.document_count, kind="int"),
    "create_time": FilterField(collections.c.create_time_us, kind="time"),
    "update_time": FilterField(collections.c.update_time_us, kind="time"),
}


@dataclass(frozen=True, slots=True)
class NewCollection:
    """What CreateCollection stores."""

    tenant: str
    name: str
    embedding_model: str
    dimension: int
    dimensions_param: int | None
    distance_metric: int
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredCollection(NewCollection):
    """A stored collection."""

    collection_id: str = ""
    document_count: int = 0
    create_time_us: int = 0
    update_time_us: int = 0


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document to upsert, with its vector (float32, the collection's dimension)."""

    id: str
    text: str
    metadata: dict[str, Any]
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Match:
    """A query result; `text`, `metadata` and `vector` are None when not asked for."""

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    vector: list[float] | None = None


def collection_of(row: Row[Any]) -> StoredCollection:
    """The record of an `embedding_collections` row."""
    m = row._mapping
    return StoredCollection(
        tenant=m["tenant"],
        name=m["name"],
        embedding_model=m["embedding_model"],
        dimension=m["dimension"],
        dimensions_param=m["dimensions_param"],
        distance_metric=m["distance_metric"],
        description=m["description"],
        labels=dict(m["labels"] or {}),
        collection_id=m["collection_id"],
        document_count=m["document_count"],
        create_time_us=m["create_time_us"],
        update_time_us=m["update_time_us"],
    )


def next_page_token(name: str, digest: str) -> str:
    """An opaque page token: continue after collection `name`, for the request hashed to `digest`."""
    raw = json.dumps([name, digest], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def after_name(token: str, digest: str) -> str:
    """The name a `next_page_token` token continues after.

    Raises:
        GatewayError: INVALID_ARGUMENT (field `page_token`) for a token not issued for this request.
    """
    try:
        name, issued_for = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(name, str) or issued_for != digest:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid_field("page_token", "not a token returned by this API for this request") from None
    return name
