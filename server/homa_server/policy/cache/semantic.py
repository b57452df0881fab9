"""Optional semantic cache: serve a stored answer to a request whose prompt means the same thing.

Contract:
    * Off by default (`cache.semantic.enabled`), and inert without an embedding function. The
      embedder is pluggable (`cache.semantic.embedder` = "package.module:factory", a zero-argument
      callable returning an `Embedder`); embedders.py has a built-in one over the local MiniLM
      model. Tests use a deterministic fake embedder (and MiniLM once).
    * Only consulted after an exact-match miss, only for plans without tools (`CachePlan.semantic`),
      and only for prompts made of text parts (images and documents cannot be embedded here).
    * Entries are grouped by tenant, model, call shape and every request parameter except the
      messages (`keys.parameters_digest`): a hit needs the same tenant, model and options, and a
      cosine similarity of the prompts' embeddings at or above `threshold`. The best match wins.
    * Entries live in this process's memory, at most `max_entries` per group (oldest dropped first),
      and obey the same max age and TTL as exact entries. Lookups scan a group linearly.
    * An embedder failure is a miss (logged), never an error for the caller.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.policy.cache.backends.base import Invalidation
from homa_server.policy.cache.keys import CachePlan, parameters_digest

log = logging.getLogger("homa.cache")

#: Text in, embedding vector out.
Embedder = Callable[[str], Awaitable[Sequence[float]]]


def load_embedder(spec: str) -> Embedder:
    """Import "package.module:factory" and call the factory (see the module docstring).

    Raises:
        ValueError: a malformed spec, or a factory that does not return a callable.
        ImportError / AttributeError: the module or factory does not exist.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError("cache.semantic.embedder must look like 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    embedder = factory()
    if not callable(embedder):
        raise ValueError(f"{spec} did not return an embedding function")
    result: Embedder = embedder
    return result


def prompt_text(request: chat_pb2.CompleteRequest) -> str | None:
    """Role-tagged text of every message, or None when a message holds anything but text."""
    lines = []
    for message in request.messages:
        for part in message.parts:
            if part.WhichOneof("kind") != "text":
                return None
            lines.append(f"{message.role}:{part.text}")
    return "\n".join(lines)


def _unit(vector: Sequence[float]) -> tuple[float, ...] | None:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        return None
    return tuple(x / norm for x in vector)


@dataclass(frozen=True, slots=True)
class _Stored:
    vector: tuple[float, ...]
    key: str
    value: bytes
    stored_at: float  # time.time()


_Group = tuple[str, str, str, str]  # tenant, model, shape, parameters digest


class SemanticCache:
    """In-process similarity index of cached answers (see the module docstring)."""

    def __init__(self, embedder: Embedder, threshold: float, max_entries: int, ttl_s: float) -> None:
        self._embed = embedder
        self._threshold = threshold
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._groups: dict[_Group, deque[_Stored]] = {}

    async def _vector(self, request: chat_pb2.CompleteRequest) -> tuple[float, ...] | None:
        text = prompt_text(request)
        if text is None:
            return None
        try:
            return _unit(await self._embed(text))
        except Exception:
            log.warning("semantic cache: embedding failed", exc_info=True)
            return None

    @staticmethod
    def _group(plan: CachePlan, request: chat_pb2.CompleteRequest) -> _Group:
        return (plan.tenant, plan.model, plan.shape, parameters_digest(request, plan.model))

    async def lookup(self, plan: CachePlan, request: chat_pb2.CompleteRequest) -> bytes | None:
        """The stored entry bytes of the most similar prompt at or above the threshold, or None."""
        group = self._groups.get(self._group(plan, request))
        if not plan.semantic or not plan.read or not group:
            return None
        vector = await self._vector(request)
        if vector is None:
            return None
        now = time.time()
        best: _Stored | None = None
        best_score = self._threshold
        for stored in group:
            age = now - stored.stored_at
            if age > plan.max_age_s or age > self._ttl_s or len(stored.vector) != len(vector):
                continue
            score = math.fsum(a * b for a, b in zip(stored.vector, vector, strict=True))
            if score >= best_score:
                best, best_score = stored, score
        return None if best is None else best.value

    async def store(self, plan: CachePlan, request: chat_pb2.CompleteRequest, value: bytes) -> None:
        """Index `value` under the prompt's embedding (no-op when not eligible)."""
        if not plan.semantic or not plan.write:
            return
        vector = await self._vector(request)
        if vector is None:
            return
        group = self._groups.setdefault(self._group(plan, request), deque(maxlen=self._max_entries))
        for stored in list(group):
            if stored.key == plan.key:
                group.remove(stored)
        group.append(_Stored(vector, plan.key, value, time.time()))

    def invalidate(self, target: Invalidation) -> int:
        """Remove matching entries; exact count."""
        removed = 0
        for (tenant, model, _shape, _digest), group in list(self._groups.items()):
            if target.tenant is not None and tenant != target.tenant:
                continue
            if (target.kind == "tenant" and tenant != target.value) or (
                target.kind == "model" and model != target.value
            ):
                continue
            keep = [s for s in group if target.kind == "key" and s.key != target.value]
            removed += len(group) - len(keep)
            group.clear()
            group.extend(keep)
        self._groups = {g: entries for g, entries in self._groups.items() if entries}
        return removed
