"""Filesystem backend: one file per entry, shared by the replicas of one host (or a shared volume).

Contract: see backends/base.py.
    * Path: `<directory>/<tenant tag>/<model tag>/<key>.entry`; content: the expiry time (big-endian
      f64, UTC epoch seconds) followed by the entry bytes. Files are created with mode 0600.
    * Writes go to a temporary file in the same directory and are moved into place with
      `os.replace` (atomic): a reader sees the old entry, the new one, or none, never a torn file.
    * A read of an expired entry deletes it and misses; invalidation deletes matching files (exact
      count) and sweeps expired ones it meets.
    * File I/O runs in a worker thread (`asyncio.to_thread`) so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
import time
from pathlib import Path

from homa_server.policy.cache.backends.base import Invalidation, Slot, tag

_EXPIRY = struct.Struct(">d")
_SUFFIX = ".entry"


class FilesystemBackend:
    """Cache entries as files (see the module docstring)."""

    name = "filesystem"
    exact_counts = True

    def __init__(self, directory: Path) -> None:
        self._root = directory

    def _path(self, slot: Slot) -> Path:
        return self._root / tag(slot.tenant) / tag(slot.model) / f"{slot.key}{_SUFFIX}"

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) < _EXPIRY.size or _EXPIRY.unpack_from(data)[0] <= time.time():
            path.unlink(missing_ok=True)
            return None
        return data[_EXPIRY.size :]

    def _write(self, path: Path, value: bytes, ttl_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_EXPIRY.pack(time.time() + ttl_s))
                out.write(value)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _candidates(self, target: Invalidation) -> list[Path]:
        if target.kind == "tenant":
            if target.tenant is not None and target.tenant != target.value:
                return []
            tenant = tag(target.value)
        else:
            tenant = "*" if target.tenant is None else tag(target.tenant)
        model = tag(target.value) if target.kind == "model" else "*"
        if target.kind == "key":
            if not target.value or not all(c in "0123456789abcdef" for c in target.value):
                return []
            name = f"{target.value}{_SUFFIX}"
        else:
            name = f"*{_SUFFIX}"
        return list(self._root.glob(f"{tenant}/{model}/{name}"))

    def _remove(self, target: Invalidation) -> int:
        removed = 0
        now = time.time()
        for path in self._candidates(target):
            try:
                with path.open("rb") as handle:
                    head = handle.read(_EXPIRY.size)
                path.unlink()
            except FileNotFoundError:
                continue
            if len(head) == _EXPIRY.size and _EXPIRY.unpack(head)[0] > now:
                removed += 1  # expired files are swept but not counted
        return removed

    async def get(self, slot: Slot) -> bytes | None:
        """The stored bytes, or None (missing or expired)."""
        return await asyncio.to_thread(self._read, self._path(slot))

    async def put(self, slot: Slot, value: bytes, ttl_s: float) -> None:
        """Write atomically (temporary file + rename)."""
        await asyncio.to_thread(self._write, self._path(slot), value, ttl_s)

    async def invalidate(self, target: Invalidation) -> int:
        """Delete matching files; exact count of live entries removed."""
        return await asyncio.to_thread(self._remove, target)

    async def aclose(self) -> None:
        """Nothing to release."""
