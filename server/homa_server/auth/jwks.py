"""Verification keys: strict decoding helpers, JWK parsing and a rate-limited JWKS cache.

Contract:
    * Only public signature keys are ever produced: RSA (>= 2048 bits) and EC P-256/P-384/P-521.
      Symmetric (`oct`) and encryption (`use: enc`) entries of a JWKS are ignored; private parts are
      never read.
    * `JwksCache` fetches its one configured URL through an injected `Fetcher` and nothing else; a
      `kid` is only ever used as an opaque dictionary key.
    * A refresh caused by an unknown `kid` happens at most once per `min_refresh_interval_s`; a
      failed fetch keeps the previous keys (stale keys beat no keys), so rotation is picked up as
      soon as the new document is fetched and removed keys stop verifying after it.
    * Every fetch is bounded in time (`timeout_s`) and size (`max_bytes`); failures are never raised
      to callers except as `auth_unavailable()` when no key at all is known.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from homa_server.auth.principal import auth_unavailable

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
#: Async function returning the body of a successful GET of `url`; raises `FetchError` otherwise.
Fetcher = Callable[[str], Awaitable[bytes]]

MIN_RSA_BITS: Final = 2048
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_ES_CURVE: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class FetchError(Exception):
    """A key-set or metadata document could not be fetched (status, size, timeout, transport)."""


class DecodeError(ValueError):
    """Input is not strict base64url or strict JSON."""


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url strictly (alphabet checked, no padding, no whitespace)."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise DecodeError("not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("not base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError("duplicate member")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise DecodeError(f"non-standard JSON constant {name}")


def strict_json_object(data: bytes) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object; duplicate members, NaN/Infinity and deep nesting fail."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("not a JSON object") from exc
    if not isinstance(value, dict):
        raise DecodeError("not a JSON object")
    return value


def _b64_int(value: Any) -> int:
    if not isinstance(value, str) or not value:
        raise DecodeError("bad integer")
    return int.from_bytes(b64url_decode(value), "big")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key: `kid` as published (opaque), `alg` if the JWK pins one."""

    kid: str | None
    key: PublicKey
    alg: str | None = None


def key_fits(alg: str, key: PublicKey) -> bool:
    """Whether `key` may verify a signature of algorithm `alg` (RS* needs RSA, ES* the matching curve)."""
    if alg in {"RS256", "RS384", "RS512"}:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    if alg in _ES_CURVE:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _ES_CURVE[alg]
    return False


def select_key(keys: tuple[VerificationKey, ...], kid: str | None, alg: str) -> VerificationKey | None:
    """The key for (`kid`, `alg`): exact kid match, or the single fitting key when the token has no kid."""
    fitting = [k for k in keys if key_fits(alg, k.key) and (k.alg is None or k.alg == alg)]
    if kid is None:
        return fitting[0] if len(fitting) == 1 else None
    return next((k for k in fitting if k.kid == kid), None)


def parse_jwk(jwk: Mapping[str, Any]) -> VerificationKey | None:
    """A public signature key from one JWK, or None when the entry is unusable or not for signatures."""
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if (kid is not None and not isinstance(kid, str)) or (alg is not None and not isinstance(alg, str)):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        kty = jwk.get("kty")
        key: PublicKey
        if kty == "RSA":
            key = rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n"))).public_key()
            if key.key_size < MIN_RSA_BITS:
                return None
        elif kty == "EC":
            curve = _CURVES.get(str(jwk.get("crv")))
            if curve is None:
                return None
            key = ec.EllipticCurvePublicNumbers(
                _b64_int(jwk.get("x")), _b64_int(jwk.get("y")), curve()
            ).public_key()
        else:
            return None
    except (ValueError, TypeError):
        return None
    return VerificationKey(kid, key, alg)


def parse_jwks(document: bytes, max_keys: int = 32) -> tuple[VerificationKey, ...]:
    """All usable keys of a JWKS document; raises `DecodeError` if it is not a JWKS at all."""
    body = strict_json_object(document)
    entries = body.get("keys")
    if not isinstance(entries, list) or len(entries) > max_keys:
        raise DecodeError("not a JWKS")
    keys = (parse_jwk(e) for e in entries if isinstance(e, dict))
    return tuple(k for k in keys if k is not None)


def httpx_fetcher(
    client: httpx.AsyncClient, *, max_bytes: int = 256 * 1024, timeout_s: float = 5.0
) -> Fetcher:
    """A `Fetcher` over an httpx client: GET, no redirects, 200 only, body capped at `max_bytes`."""

    async def fetch(url: str) -> bytes:
        try:
            async with client.stream(
                "GET",
                url,
                headers={"Accept": "application/json"},
                timeout=timeout_s,
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError("response too large")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError("response too large")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise FetchError(type(exc).__name__) from exc

    return fetch


class JwksCache:
    """Keys of one JWKS URL, fetched lazily, cached, and refreshed on rotation.

    Args:
        url: the JWKS URL (from settings or OIDC discovery; never from a token).
        fetch: async GET function (see `httpx_fetcher`); injected so tests stay offline.
        min_refresh_interval_s: least time between two fetches caused by an unknown `kid`.
        failure_retry_interval_s: least time between fetches while no key is known at all.
        max_age_s: keys older than this are refreshed on next use (kept if that fails).
        timeout_s: overall bound of one fetch, enforced here as well as by the fetcher.
        max_bytes: largest accepted document.
        max_keys: largest accepted number of entries.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        url: str,
        fetch: Fetcher,
        *,
        min_refresh_interval_s: float = 60.0,
        failure_retry_interval_s: float = 5.0,
        max_age_s: float = 3600.0,
        timeout_s: float = 5.0,
        max_bytes: int = 256 * 1024,
        max_keys: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._min_refresh = min_refresh_interval_s
        self._failure_retry = failure_retry_interval_s
        self._max_age = max_age_s
        self._timeout = timeout_s
        self._max_bytes = max_bytes
        self._max_keys = max_keys
        self._clock = clock
        self._keys: tuple[VerificationKey, ...] = ()
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None
        self._last_failed = False
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        """The keys currently cached (possibly empty)."""
        return self._keys

    def _due(self, *, unknown_kid: bool) -> bool:
        now = self._clock()
        if self._last_attempt is None:
            return True
        since = now - self._last_attempt
        if not self._keys:
            return since >= self._failure_retry
        if self._loaded_at is not None and now - self._loaded_at >= self._max_age:
            return since >= self._failure_retry
        return unknown_kid and since >= self._min_refresh

    async def refresh(self) -> bool:
        """Fetch the document now (no rate limit); True if new keys were installed."""
        self._last_attempt = self._clock()
        self.fetch_count += 1
        try:
            async with asyncio.timeout(self._timeout):
                document = await self._fetch(self.url)
            if len(document) > self._max_bytes:
                raise FetchError("response too large")
            keys = parse_jwks(document, self._max_keys)
        except Exception as exc:  # any fetch/parse failure is an outage, never a pass
            self._last_failed = True
            log.warning("JWKS fetch failed", extra={"jwks_url": self.url, "error": type(exc).__name__})
            return False
        self._keys = keys
        self._loaded_at = self._clock()
        self._last_failed = False
        return True

    async def _maybe_refresh(self, *, unknown_kid: bool) -> None:
        if not self._due(unknown_kid=unknown_kid):
            return
        async with self._lock:
            if self._due(unknown_kid=unknown_kid):  # another waiter may have refreshed meanwhile
                await self.refresh()

    async def get_key(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key for (`kid`, `alg`), refreshing if due; None means "no such key" (reject the token).

        Raises:
            GatewayError: `auth_unavailable()` when no key is known because fetching failed.
        """
        await self._maybe_refresh(unknown_kid=False)
        found = select_key(self._keys, kid, alg)
        if found is None:
            await self._maybe_refresh(unknown_kid=True)
            found = select_key(self._keys, kid, alg)
        if found is None and not self._keys and self._last_failed:
            raise auth_unavailable(retry_after=self._failure_retry)
        return found
