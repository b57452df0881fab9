"""RFC 7662 token introspection for opaque OAuth2 access tokens.

Contract of `Introspector.introspect(token) -> Principal`:
    * POSTs `token=...&token_type_hint=access_token` to the configured endpoint with HTTP Basic client
      authentication (RFC 6749 §2.3.1: id and secret form-encoded, then base64).
    * The token is active only if the response is HTTP 200 with a JSON object whose `active` member is
      the boolean `true`; `"true"`, `1` and anything else are inactive. An active response must still
      have an unexpired `exp` (if present), no future `nbf`, a `sub` or `client_id`, a tenant, and
      match the configured issuer/audience when those are set; otherwise it is treated as inactive.
    * Positive results are cached for min(exp - now, `max_cache_ttl_s`); negative results for
      `negative_cache_ttl_s`. Cache keys are SHA-256 digests, never tokens; the cache is bounded.
    * Fail-closed policy: a timeout, transport error, non-200 status, oversized or non-JSON answer is
      never cached and raises `auth_unavailable()` (UNAVAILABLE, retryable), or `invalid_credentials()`
      when `errors_as_unauthenticated` is set. Inactive tokens raise `invalid_credentials()`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import httpx

from homa_server.auth.jwks import FetchError, strict_json_object
from homa_server.auth.jwt_validator import parse_scopes, text_claim
from homa_server.auth.principal import Principal, auth_unavailable, invalid_credentials
from homa_server.errors import GatewayError

log = logging.getLogger(__name__)

#: Async POST: (url, headers, form body) -> (status, body). Raises `FetchError` on transport failure.
Poster = Callable[[str, Mapping[str, str], bytes], Awaitable[tuple[int, bytes]]]

_FORM: Final = "application/x-www-form-urlencoded"


def httpx_poster(client: httpx.AsyncClient, *, max_bytes: int = 64 * 1024, timeout_s: float = 3.0) -> Poster:
    """A `Poster` over an httpx client: no redirects, body capped at `max_bytes`."""

    async def post(url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            async with client.stream(
                "POST", url, headers=dict(headers), content=body, timeout=timeout_s, follow_redirects=False
            ) as response:
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) > max_bytes:
                        raise FetchError("response too large")
                return response.status_code, bytes(received)
        except httpx.HTTPError as exc:
            raise FetchError(type(exc).__name__) from exc

    return post


@dataclass(frozen=True)
class IntrospectionConfig:
    """Where and how to introspect, and how long to trust answers.

    Attributes:
        endpoint: the introspection URL (from settings or OIDC discovery).
        client_id / client_secret: Homa's own client credentials at the authorisation server.
        max_cache_ttl_s: longest time an active answer is reused (never beyond the token's `exp`).
        negative_cache_ttl_s: how long an inactive answer is reused.
        timeout_s: bound of one introspection call.
        max_response_bytes: largest accepted answer.
        max_token_bytes: longest token sent at all (longer ones are rejected locally).
        max_cache_entries: cache bound (oldest entries evicted first).
        issuer / audience: when set, an active answer must carry this `iss` / include this `aud`.
        tenant_claim / default_tenant: as for JWTs.
        errors_as_unauthenticated: map outages to UNAUTHENTICATED instead of UNAVAILABLE.
        clock: wall clock in Unix seconds, injectable for tests.
    """

    endpoint: str
    client_id: str
    client_secret: str
    max_cache_ttl_s: float = 60.0
    negative_cache_ttl_s: float = 5.0
    timeout_s: float = 3.0
    max_response_bytes: int = 64 * 1024
    max_token_bytes: int = 8 * 1024
    max_cache_entries: int = 10_000
    issuer: str | None = None
    audience: str | None = None
    tenant_claim: str = "tenant"
    default_tenant: str | None = None
    errors_as_unauthenticated: bool = False
    clock: Callable[[], float] = time.time


class Introspector:
    """Client for one RFC 7662 endpoint with a bounded, expiry-aware cache."""

    def __init__(self, config: IntrospectionConfig, post: Poster) -> None:
        if not config.endpoint or not config.client_id or not config.client_secret:
            raise ValueError("introspection needs an endpoint, a client id and a client secret")
        self._config = config
        self._post = post
        credentials = f"{quote_plus(config.client_id)}:{quote_plus(config.client_secret)}"
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii"),
            "Content-Type": _FORM,
            "Accept": "application/json",
        }
        # digest -> (valid_until, principal or None for inactive)
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()
        self.request_count = 0

    async def introspect(self, token: str) -> Principal:
        """The Principal for an active `token`; see the module docstring for failures."""
        cfg = self._config
        if not isinstance(token, str) or not token or len(token) > cfg.max_token_bytes or not token.isascii():
            raise invalid_credentials()
        digest = hashlib.sha256(token.encode("ascii")).digest()
        now = cfg.clock()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached[0] > now:
                if cached[1] is None:
                    raise invalid_credentials()
                return cached[1]
            del self._cache[digest]
        principal = await self._ask(token)
        now = cfg.clock()
        if principal is None:
            self._store(digest, now + cfg.negative_cache_ttl_s, None)
            raise invalid_credentials()
        ttl = cfg.max_cache_ttl_s
        if principal.expires_at is not None:
            ttl = min(ttl, principal.expires_at - now)
        if ttl > 0:
            self._store(digest, now + ttl, principal)
        return principal

    def _store(self, digest: bytes, until: float, value: Principal | None) -> None:
        self._cache[digest] = (until, value)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._config.max_cache_entries:
            self._cache.popitem(last=False)

    def _outage(self) -> GatewayError:
        return invalid_credentials() if self._config.errors_as_unauthenticated else auth_unavailable()

    async def _ask(self, token: str) -> Principal | None:
        cfg = self._config
        body = urlencode({"token": token, "token_type_hint": "access_token"}).encode("ascii")
        self.request_count += 1
        try:
            async with asyncio.timeout(cfg.timeout_s):
                status, answer = await self._post(cfg.endpoint, self._headers, body)
            if status != 200 or len(answer) > cfg.max_response_bytes:
                raise FetchError(f"HTTP {status}")
            claims = strict_json_object(answer)
        except Exception as exc:  # any fetch/parse failure is an outage, never a pass
            log.warning("token introspection failed", extra={"error": type(exc).__name__})
            raise self._outage() from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal | None:
        cfg = self._config
        if claims.get("active") is not True:
            return None
        now = cfg.clock()
        exp = claims.get("exp")
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= now):
            return None
        nbf = claims.get("nbf")
        if nbf is not None and (isinstance(nbf, bool) or not isinstance(nbf, int | float) or nbf > now):
            return None
        if cfg.issuer is not None and claims.get("iss") != cfg.issuer:
            return None
        if cfg.audience is not None:
            aud = claims.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or cfg.audience not in audiences:
                return None
        client_id = text_claim(claims.get("client_id"))
        subject = text_claim(claims["sub"]) if "sub" in claims else client_id
        tenant = text_claim(claims.get(cfg.tenant_claim, cfg.default_tenant))
        scopes = parse_scopes(claims)
        if subject is None or tenant is None or scopes is None:
            return None
        return Principal(
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            method="oauth2",
            client_id=client_id,
            expires_at=float(exp) if exp is not None else None,
        )
