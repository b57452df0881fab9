"""An in-process cache of collections' decoded vectors, so repeated queries skip the table scan.

Entries are keyed by collection id and stamped with the collection's `update_time_us`, which every
write bumps in the same transaction (store/vectors.py). A query passes the stamp it just read with
the collection; a different stamp is a miss, so a replica never serves vectors older than the
collection row it read, whichever replica wrote them (two writes would have to land in the same
microsecond to share a stamp). Bounded by bytes; least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CachedVectors", "VectorCache"]


@dataclass(frozen=True, slots=True)
class CachedVectors:
    """One collection's documents: ids, metadata and the [n, d] float32 matrix, in the same order."""

    ids: list[str]
    metadata: list[dict[str, Any]]
    matrix: npt.NDArray[np.float32]

    @property
    def size(self) -> int:
        """Approximate bytes held."""
        return int(self.matrix.nbytes) + 128 * len(self.ids)


class VectorCache:
    """LRU by bytes. Thread-safe.

    Args:
        max_bytes: total budget; an entry larger than the budget is not kept.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._used = 0
        self._entries: OrderedDict[str, tuple[int, CachedVectors]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, collection_id: str, stamp: int) -> CachedVectors | None:
        """The cached vectors when their stamp is `stamp`, else None."""
        with self._lock:
            found = self._entries.get(collection_id)
            if found is None or found[0] != stamp:
                return None
            self._entries.move_to_end(collection_id)
            return found[1]

    def put(self, collection_id: str, stamp: int, vectors: CachedVectors) -> None:
        """Remember `vectors` for `collection_id` at `stamp` (replacing any older entry)."""
        with self._lock:
            self._drop(collection_id)
            if vectors.size > self._max:
                return
            self._entries[collection_id] = (stamp, vectors)
            self._used += vectors.size
            while self._used > self._max:
                oldest = next(iter(self._entries))
                self._drop(oldest)

    def forget(self, collection_id: str) -> None:
        """Drop a collection's entry (after this replica changed or deleted it)."""
        with self._lock:
            self._drop(collection_id)

    def _drop(self, collection_id: str) -> None:
        found = self._entries.pop(collection_id, None)
        if found is not None:
            self._used -= found[1].size
