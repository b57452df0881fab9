"""Helpers every embeddings adapter shares: input checks and building the EmbedResponse.

Vectors travel inside the gateway as `Embedding.packed` (little-endian float32 bytes): that is what
OpenAI-style APIs send for `encoding_format: "base64"` and what numpy produces, and a packed
`repeated float` field has exactly the same bytes on the protobuf wire. So responses are assembled
from bytes (no Python float objects), and routing turns `packed` into `values` by re-framing the
same bytes (routing/embedding.py) when the caller asked for floats.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import FieldViolation, invalid_argument
from homa_server.providers._errors import protocol_error

__all__ = ["bytes_from_base64", "new_response", "packed_response", "texts_of", "varint"]


def texts_of(request: embedding_pb2.EmbedRequest, provider: str) -> list[str]:
    """The text of every input, in order.

    Raises:
        GatewayError: INVALID_ARGUMENT with one violation per image input (text-only models).
    """
    violations = [
        FieldViolation(f"inputs[{i}].image", f"{provider} embeds text only with this model")
        for i, item in enumerate(request.inputs)
        if item.WhichOneof("content") != "text"
    ]
    if violations:
        raise invalid_argument("this embedding model takes text inputs only", *violations)
    return [item.text for item in request.inputs]


def bytes_from_base64(provider: str, encoded: str) -> bytes:
    """Decode a base64 string of packed little-endian float32 values.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when it is not base64 of a whole number of floats.
    """
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise protocol_error(provider, "an embedding is not valid base64") from None
    if len(raw) % 4:
        raise protocol_error(provider, "an embedding's byte length is not a multiple of 4")
    return raw


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packed_response(
    provider: str, vectors: Sequence[bytes], expected: int, model: str, input_tokens: int
) -> embedding_pb2.EmbedResponse:
    """An `EmbedResponse` whose embeddings carry `vectors` (float32 LE bytes) in `packed`,
    indexed 0..n-1.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the vendor returned another number of vectors
            than inputs, or vectors of different lengths.
    """
    if len(vectors) != expected:
        raise protocol_error(provider, f"{len(vectors)} embeddings returned for {expected} inputs")
    size = len(vectors[0]) if vectors else 0
    if any(len(v) != size for v in vectors):
        raise protocol_error(provider, "the embeddings do not all have the same length")
    parts = []
    for index, raw in enumerate(vectors):
        # Embedding: field 1 (index, varint) and field 3 (packed, bytes).
        body = (b"\x08" + varint(index) if index else b"") + b"\x1a" + varint(len(raw)) + raw
        parts.append(b"\x0a" + varint(len(body)) + body)  # EmbedResponse field 1 (embeddings)
    response = embedding_pb2.EmbedResponse.FromString(b"".join(parts))
    response.model = model
    response.dimensions = size // 4
    response.usage.input_tokens = input_tokens
    response.usage.total_tokens = input_tokens
    return response


def new_response(
    provider: str, vectors: Sequence[Sequence[float]], expected: int, model: str, input_tokens: int
) -> embedding_pb2.EmbedResponse:
    """`packed_response` for vectors given as numbers (vendors answering JSON arrays).

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR as `packed_response`.
    """
    if vectors and any(len(v) != len(vectors[0]) for v in vectors):
        raise protocol_error(provider, "the embeddings do not all have the same length")
    matrix = np.asarray(vectors, dtype="<f4")
    return packed_response(provider, [row.tobytes() for row in matrix], expected, model, input_tokens)
