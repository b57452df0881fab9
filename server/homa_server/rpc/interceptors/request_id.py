"""Request ids: taken from the caller's `x-request-id` when it is sane, generated otherwise."""

from __future__ import annotations

import os
from collections.abc import Sequence

INBOUND_KEY = "x-request-id"
OUTBOUND_KEY = "homa-request-id"
_MAX_LEN = 128
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def new_request_id() -> str:
    """A random 128-bit id as 32 hex characters."""
    return os.urandom(16).hex()


def request_id_from(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's id when it is at most 128 safe characters; a new one otherwise.

    Ids are echoed into logs and metadata, so anything outside `[A-Za-z0-9._:-]` is refused
    rather than escaped.
    """
    for key, value in metadata or ():
        if key == INBOUND_KEY and isinstance(value, str) and 0 < len(value) <= _MAX_LEN:
            if all(ch in _ALLOWED for ch in value):
                return value
            break
    return new_request_id()
