"""Checks of the semantic-search requests (collections and documents), before any work is done.

Each function raises INVALID_ARGUMENT with BadRequest field violations naming the bad fields.
"""

from __future__ import annotations

import re
from typing import Final

import orjson
from google.protobuf import json_format

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import FieldViolation, invalid_argument, invalid_field

__all__ = [
    "MAX_DOCUMENTS",
    "check_collection",
    "check_delete_documents",
    "check_documents",
    "check_name",
    "check_query",
    "metadata_dict",
    "top_k",
]

NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
MAX_DESCRIPTION: Final = 1024
MAX_LABELS: Final = 64
MAX_LABEL: Final = 256
MAX_DOCUMENTS: Final = 1000
MAX_DOCUMENT_ID: Final = 256
MAX_METADATA_BYTES: Final = 8 * 1024
MAX_TOP_K: Final = 1000
DEFAULT_TOP_K: Final = 10
MAX_DIMENSION: Final = 65536


def check_name(name: str, field: str = "name") -> str:
    """`name` when it is a valid collection name (1-63 of a-z 0-9 - _, starting with a letter)."""
    if not NAME.fullmatch(name):
        raise invalid_field(field, "1 to 63 lower-case letters, digits, - and _, starting with a letter")
    return name


def check_collection(collection: embedding_pb2.Collection) -> None:
    """A CreateCollection request's collection."""
    violations: list[FieldViolation] = []
    if not NAME.fullmatch(collection.name):
        violations.append(
            FieldViolation(
                "collection.name", "1 to 63 lower-case letters, digits, - and _, starting with a letter"
            )
        )
    if len(collection.description) > MAX_DESCRIPTION:
        violations.append(FieldViolation("collection.description", f"at most {MAX_DESCRIPTION} characters"))
    if not collection.embedding_model:
        violations.append(FieldViolation("collection.embedding_model", "required"))
    if collection.HasField("dimension") and not 1 <= collection.dimension <= MAX_DIMENSION:
        violations.append(FieldViolation("collection.dimension", f"must be between 1 and {MAX_DIMENSION}"))
    if collection.distance_metric not in embedding_pb2.DistanceMetric.values():
        violations.append(FieldViolation("collection.distance_metric", "unknown value"))
    if len(collection.labels) > MAX_LABELS:
        violations.append(FieldViolation("collection.labels", f"at most {MAX_LABELS} labels"))
    for key, value in collection.labels.items():
        if not key or len(key) > 63 or len(value) > MAX_LABEL:
            violations.append(
                FieldViolation(
                    f"collection.labels[{key!r}]", f"keys 1-63 and values at most {MAX_LABEL} characters"
                )
            )
    if violations:
        raise invalid_argument("invalid collection", *violations)


def metadata_dict(document: embedding_pb2.Document) -> dict[str, object]:
    """The document's metadata as plain JSON values."""
    return json_format.MessageToDict(document.metadata) if document.HasField("metadata") else {}


def check_documents(documents: list[embedding_pb2.Document], dimension: int) -> None:
    """An UpsertDocuments request's documents against a collection of `dimension`."""
    violations: list[FieldViolation] = []
    if not 1 <= len(documents) <= MAX_DOCUMENTS:
        violations.append(FieldViolation("documents", f"1 to {MAX_DOCUMENTS} documents per call"))
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        if not doc.id or len(doc.id) > MAX_DOCUMENT_ID:
            violations.append(FieldViolation(f"documents[{i}].id", f"1 to {MAX_DOCUMENT_ID} characters"))
        elif doc.id in seen:
            violations.append(FieldViolation(f"documents[{i}].id", "duplicate id in this request"))
        seen.add(doc.id)
        if doc.vector and len(doc.vector) != dimension:
            violations.append(
                FieldViolation(f"documents[{i}].vector", f"must have the collection's {dimension} dimensions")
            )
        if not doc.vector and not doc.text.strip():
            violations.append(FieldViolation(f"documents[{i}].text", "required when no vector is given"))
        if doc.HasField("metadata") and len(orjson.dumps(metadata_dict(doc))) > MAX_METADATA_BYTES:
            violations.append(FieldViolation(f"documents[{i}].metadata", "at most 8 KiB serialised"))
        if len(violations) >= 20:
            break
    if violations:
        raise invalid_argument("invalid documents", *violations)


def top_k(request: embedding_pb2.QueryCollectionRequest) -> int:
    """The requested number of matches (default 10)."""
    return request.top_k if request.HasField("top_k") else DEFAULT_TOP_K


def check_query(request: embedding_pb2.QueryCollectionRequest, dimension: int) -> None:
    """A QueryCollection request against a collection of `dimension`."""
    violations: list[FieldViolation] = []
    if not request.query_vector and not request.query_text.strip():
        violations.append(FieldViolation("query_text", "query_text or query_vector is required"))
    if request.query_vector and len(request.query_vector) != dimension:
        violations.append(
            FieldViolation("query_vector", f"must have the collection's {dimension} dimensions")
        )
    if not 1 <= top_k(request) <= MAX_TOP_K:
        violations.append(FieldViolation("top_k", f"must be between 1 and {MAX_TOP_K}"))
    if violations:
        raise invalid_argument("invalid query", *violations)


def check_delete_documents(request: embedding_pb2.DeleteDocumentsRequest) -> None:
    """Exactly one of ids and filter; at most 1000 ids."""
    if bool(request.ids) == bool(request.filter.strip()):
        raise invalid_argument(
            "set exactly one of ids and filter",
            FieldViolation("ids", "set exactly one of ids and filter"),
            FieldViolation("filter", "set exactly one of ids and filter"),
        )
    if len(request.ids) > MAX_DOCUMENTS:
        raise invalid_field("ids", f"at most {MAX_DOCUMENTS} ids per call")
