"""Which requests the response cache may serve or store, and under which key.

Contract:
    * The key is the SHA-256 (hex) of a version tag, the tenant, the call shape ("unary" or
      "stream") and a normalised copy of the request: the model as resolved by the dispatcher,
      messages, tools, tool_choice, response_format, every sampling option, reasoning and
      provider_options, serialised with protobuf's deterministic serialisation (map keys sorted).
      `metadata`, `user`, `conversation_id` and `options` (cache mode, max age, timeouts, priority,
      fallbacks) never change the key. Two tenants never share a key.
    * Keys are stable within a release; an upgrade that changes the normalisation only costs misses.
    * Deterministic requests are cached: temperature unset or 0, or a `seed` set (the caller asked
      for reproducible sampling, which a stored answer gives exactly). Others only with
      `options.cache_nondeterministic`. Requests naming a `conversation_id` are never cached (their
      history lives server-side and changes with every turn).
    * Modes: OFF bypasses (no lookup, no store, no `homa-cache` trailer); UNSPECIFIED and ON read and
      write; READ_ONLY reads and never writes; WRITE_ONLY never reads but refreshes the entry.
    * Max age: `options.cache_max_age` when set (0 = nothing is fresh enough: no read), otherwise the
      `cache.ttl_s` setting. A negative age is INVALID_ARGUMENT.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import invalid_field

Shape = Literal["unary", "stream"]

_VERSION = b"homa-cache-v1"


def is_deterministic(request: chat_pb2.CompleteRequest) -> bool:
    """Temperature unset or 0, or a seed set (see the module docstring)."""
    if request.HasField("seed"):
        return True
    return not request.HasField("temperature") or request.temperature == 0.0


def normalised_request(request: chat_pb2.CompleteRequest, model: str) -> chat_pb2.CompleteRequest:
    """A copy of `request` holding only what decides the answer, with `model` as resolved."""
    copy = chat_pb2.CompleteRequest()
    copy.CopyFrom(request)
    copy.model = model
    copy.ClearField("metadata")
    copy.ClearField("user")
    copy.ClearField("conversation_id")
    copy.ClearField("options")
    return copy


def parameters_digest(request: chat_pb2.CompleteRequest, model: str) -> str:
    """Digest of everything but the messages (the semantic cache groups entries by it)."""
    copy = normalised_request(request, model)
    copy.ClearField("messages")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def cache_key(request: chat_pb2.CompleteRequest, tenant: str, model: str, shape: Shape) -> str:
    """The entry's key (hex SHA-256); see the module docstring for what it covers."""
    digest = hashlib.sha256()
    for part in (_VERSION, tenant.encode(), shape.encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(normalised_request(request, model).SerializeToString(deterministic=True))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the cache does for one call (None from `plan()` means: bypass)."""

    key: str
    tenant: str
    model: str
    shape: Shape
    read: bool
    write: bool
    #: Oldest entry accepted, in seconds.
    max_age_s: float
    #: The semantic cache may be consulted (no tools; settings decide whether it exists).
    semantic: bool


def plan(
    request: chat_pb2.CompleteRequest,
    *,
    tenant: str,
    model: str,
    shape: Shape,
    default_max_age_s: float,
) -> CachePlan | None:
    """Decide what the cache does for `request` (None = bypass; see the module docstring).

    Raises:
        GatewayError: INVALID_ARGUMENT for a negative `options.cache_max_age`.
    """
    options = request.options
    mode = options.cache
    if mode == chat_pb2.CACHE_MODE_OFF or request.conversation_id:
        return None
    if not (is_deterministic(request) or options.cache_nondeterministic):
        return None
    max_age = default_max_age_s
    if options.HasField("cache_max_age"):
        max_age = options.cache_max_age.ToTimedelta().total_seconds()
        if max_age < 0:
            raise invalid_field("options.cache_max_age", "must not be negative")
    read = mode != chat_pb2.CACHE_MODE_WRITE_ONLY and max_age > 0
    write = mode != chat_pb2.CACHE_MODE_READ_ONLY
    return CachePlan(
        key=cache_key(request, tenant, model, shape),
        tenant=tenant,
        model=model,
        shape=shape,
        read=read,
        write=write,
        max_age_s=max_age,
        semantic=not request.tools,
    )
