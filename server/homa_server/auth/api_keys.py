"""Homa API key secrets and their verification on the request path.

Secret format: `homa_sk_` + 43 characters of base64url (32 random bytes, `secrets.token_urlsafe(32)`).
Only `hash_secret(secret)` (SHA-256 hex) and `secret_prefix(secret)` (first 12 characters) are stored.

Contract of `ApiKeyVerifier.verify(token) -> Principal`:
    * A token not matching `^homa_sk_[A-Za-z0-9_-]{43}$` is rejected before any cache or database
      access (SQL fragments, NUL bytes, oversized values never reach the store).
    * The key is looked up by the hash of the token (parameterised query in the store), the stored
      hash compared with `hmac.compare_digest`; unknown, revoked and expired keys all raise the one
      generic `invalid_credentials()`. A store failure raises `auth_unavailable()` (fail closed).
    * Lookups (found or not) are cached in process for `cache_ttl_s`, keyed by the hash (never the
      secret), at most `cache_size` entries (least recently used dropped). `forget(secret_hash)`
      drops one entry at once (the replica that revokes or updates a key); other replicas notice
      within `cache_ttl_s`. Expiry is checked on every call, cached or not. Concurrent misses for
      the same key share one query.
    * `last_use_time` is written at most once per `last_use_interval_s` per key by a background task
      (fire-and-forget; failures are logged, never raised to the caller).
    * Principal: subject = key id, tenant and scopes of the key, method "api_key", `key_id`,
      `allowed_models` (None when the key lists none), `expires_at` (Unix seconds) when set,
      `key_limits` (the key's rate limits and budgets, for policy/limits.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from homa_server.auth.principal import Principal, auth_unavailable, invalid_credentials
from homa_server.store.api_keys import StoredKey
from homa_server.store.database import now_us

log = logging.getLogger("homa.auth")

SECRET_PREFIX: Final = "homa_sk_"  # noqa: S105 - the public prefix, not a secret
PREFIX_CHARS: Final = 12
_SECRET_RE: Final = re.compile(r"homa_sk_[A-Za-z0-9_-]{43}")


def generate_secret() -> str:
    """A new random secret (`homa_sk_` + 43 base64url characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(token: str) -> bool:
    """Whether `token` has the exact shape of a Homa secret (checked before any lookup)."""
    return _SECRET_RE.fullmatch(token) is not None


def hash_secret(secret: str) -> str:
    """SHA-256 hex of the secret: the only form in which it is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_prefix(secret: str) -> str:
    """The first characters shown to recognise a key, e.g. `homa_sk_3f9a`."""
    return secret[:PREFIX_CHARS]


class KeyStore(Protocol):
    """What the verifier needs from the repository (store/api_keys.py)."""

    async def find_by_hash(self, secret_hash: str) -> StoredKey | None:
        """The key with this hash, or None."""

    async def touch(self, api_key_id: str, when_us: int) -> None:
        """Record a use of the key."""


def principal_of(key: StoredKey) -> Principal:
    """The Principal a verified key authenticates as."""
    return Principal(
        subject=key.api_key_id,
        tenant=key.tenant,
        scopes=frozenset(key.scopes),
        method="api_key",
        key_id=key.api_key_id,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models else None,
        expires_at=key.expire_time_us / 1e6 if key.expire_time_us is not None else None,
        key_limits=tuple(sorted((str(k), int(v)) for k, v in {**key.rate_limits, **key.budgets}.items())),
    )


class ApiKeyVerifier:
    """Verifies bearer secrets against the key store, with the cache described above."""

    def __init__(
        self,
        store: KeyStore,
        *,
        cache_ttl_s: float = 2.0,
        cache_size: int = 10000,
        last_use_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._interval = last_use_interval_s
        self._clock = clock
        # hash -> (expires at (monotonic), key or None for "no such key", its Principal)
        self._cache: OrderedDict[str, tuple[float, StoredKey | None, Principal | None]] = OrderedDict()
        self._last_touch: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[StoredKey | None]] = {}
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def verify(self, token: str) -> Principal:
        """The Principal of a valid secret; raises `invalid_credentials()` otherwise."""
        if not is_well_formed(token):
            raise invalid_credentials()
        digest = hash_secret(token)
        key, principal = await self._lookup(digest)
        if (
            key is None
            or principal is None
            or not hmac.compare_digest(key.secret_hash, digest)
            or key.revoked
            or (key.expire_time_us is not None and key.expire_time_us <= now_us())
        ):
            raise invalid_credentials()
        self._touch(key.api_key_id)
        return principal

    def forget(self, secret_hash: str) -> None:
        """Drop the cached entry of one key (after a revocation or update on this replica)."""
        self._cache.pop(secret_hash, None)
        self._inflight.pop(secret_hash, None)  # a lookup started before the change is not reused
        self._generation += 1  # ...nor cached

    def clear(self) -> None:
        """Drop every cached entry."""
        self._cache.clear()
        self._inflight.clear()
        self._generation += 1

    async def _lookup(self, digest: str) -> tuple[StoredKey | None, Principal | None]:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(digest)
            return cached[1], cached[2]
        generation = self._generation
        pending = self._inflight.get(digest)
        if pending is None:  # concurrent misses for one key share one query
            pending = asyncio.ensure_future(self._store.find_by_hash(digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda done: self._drop_inflight(digest, done))
        try:
            key = await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("API key lookup failed")
            raise auth_unavailable() from None
        principal = principal_of(key) if key is not None else None
        if self._ttl > 0 and self._size > 0 and generation == self._generation:
            self._cache[digest] = (now + self._ttl, key, principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return key, principal

    def _drop_inflight(self, digest: str, done: asyncio.Future[StoredKey | None]) -> None:
        if self._inflight.get(digest) is done:
            del self._inflight[digest]

    def _touch(self, api_key_id: str) -> None:
        now = self._clock()
        last = self._last_touch.get(api_key_id)
        if last is not None and now - last < self._interval:
            return
        if len(self._last_touch) >= max(self._size, 1) * 2:
            self._last_touch.clear()
        self._last_touch[api_key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_use(api_key_id, now_us()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_use(self, api_key_id: str, when_us: int) -> None:
        try:
            await self._store.touch(api_key_id, when_us)
        except Exception:
            log.warning("could not record API key use", extra={"api_key_id": api_key_id}, exc_info=True)

    async def aclose(self) -> None:
        """Wait for pending `last_use_time` writes (called before the database closes)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
