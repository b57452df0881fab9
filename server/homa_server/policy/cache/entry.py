"""The stored form of a cached answer: protobuf bytes in a small binary frame. Never pickle.

Layout (big-endian):
    magic  b"HOMAC\\x00\\x01\\x00" (8 bytes)
    kind   u8   1 = one CompleteResponse, 2 = the events of a streamed answer
    created_us  i64  UTC epoch microseconds when the answer was stored
    then length-prefixed fields (u32 length + bytes): tenant (UTF-8), model (UTF-8), and the
    payload messages (one serialised CompleteResponse, or each StreamCompleteResponse in order).

`decode` accepts nothing else: a foreign or truncated value raises `CorruptEntryError` (callers treat it
as a miss). `BytesSerializer` is the aiocache serializer of every backend: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from aiocache.serializers import BaseSerializer

from homa.chat.v1 import chat_service_pb2 as chat_pb2

MAGIC = b"HOMAC\x00\x01\x00"
KIND_UNARY = 1
KIND_STREAM = 2
_HEAD = struct.Struct(">Bq")
_LEN = struct.Struct(">I")


class CorruptEntryError(ValueError):
    """The stored bytes are not a cache entry of this format."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached answer."""

    kind: int
    created_us: int
    tenant: str
    model: str
    payloads: tuple[bytes, ...]

    @classmethod
    def of_response(
        cls, response: chat_pb2.CompleteResponse, *, tenant: str, model: str, now_us: int
    ) -> Entry:
        """An entry holding one unary answer."""
        return cls(KIND_UNARY, now_us, tenant, model, (response.SerializeToString(),))

    @classmethod
    def of_events(
        cls, events: list[chat_pb2.StreamCompleteResponse], *, tenant: str, model: str, now_us: int
    ) -> Entry:
        """An entry holding a whole stream, in order."""
        return cls(KIND_STREAM, now_us, tenant, model, tuple(e.SerializeToString() for e in events))

    def response(self) -> chat_pb2.CompleteResponse:
        """The unary answer (CorruptEntryError for a stream entry)."""
        if self.kind != KIND_UNARY or len(self.payloads) != 1:
            raise CorruptEntryError("not a unary entry")
        return chat_pb2.CompleteResponse.FromString(self.payloads[0])

    def events(self) -> list[chat_pb2.StreamCompleteResponse]:
        """The stream's events (CorruptEntryError for a unary entry)."""
        if self.kind != KIND_STREAM:
            raise CorruptEntryError("not a stream entry")
        return [chat_pb2.StreamCompleteResponse.FromString(p) for p in self.payloads]


def encode(entry: Entry) -> bytes:
    """The entry's bytes (see the module docstring)."""
    parts = [MAGIC, _HEAD.pack(entry.kind, entry.created_us)]
    for field in (entry.tenant.encode(), entry.model.encode(), *entry.payloads):
        parts.append(_LEN.pack(len(field)))
        parts.append(field)
    return b"".join(parts)


def decode(data: bytes) -> Entry:
    """Parse `encode`'s output.

    Raises:
        CorruptEntryError: anything else.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEAD.size:
        raise CorruptEntryError("bad magic")
    kind, created_us = _HEAD.unpack_from(data, len(MAGIC))
    if kind not in (KIND_UNARY, KIND_STREAM):
        raise CorruptEntryError("unknown kind")
    fields: list[bytes] = []
    offset = len(MAGIC) + _HEAD.size
    while offset < len(data):
        if offset + _LEN.size > len(data):
            raise CorruptEntryError("truncated length")
        (size,) = _LEN.unpack_from(data, offset)
        offset += _LEN.size
        if offset + size > len(data):
            raise CorruptEntryError("truncated field")
        fields.append(data[offset : offset + size])
        offset += size
    if len(fields) < 2:
        raise CorruptEntryError("missing tenant or model")
    try:
        tenant, model = fields[0].decode(), fields[1].decode()
    except UnicodeDecodeError:
        raise CorruptEntryError("tenant or model is not UTF-8") from None
    return Entry(kind, created_us, tenant, model, tuple(fields[2:]))


class BytesSerializer(BaseSerializer):  # type: ignore[misc]  # aiocache is untyped
    """aiocache serializer that stores bytes as they are and refuses anything else (no pickle, no JSON)."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> bytes:
        """`value` itself; TypeError unless it is bytes."""
        if not isinstance(value, bytes):
            raise TypeError(f"the response cache stores bytes only, not {type(value).__name__}")
        return value

    def loads(self, value: Any) -> bytes | None:
        """`value` itself (None for a miss); TypeError unless it is bytes."""
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError(f"the response cache reads bytes only, not {type(value).__name__}")
