"""JWT validation: one small wrapper around python-jose with every security decision made here.

Contract of `JwtValidator.validate(token) -> Principal`:
    * The token is at most `max_token_bytes`, ASCII, exactly three non-empty base64url segments
      (checked before any parsing); header and payload are strict JSON objects (no duplicate members).
    * `alg` must be in the configured allow-list (never the token's choice; `none` and anything python-
      jose cannot verify are refused at configuration time). HS* verifies only with the configured
      shared secret, RS*/ES* only with configured public keys of the matching type and curve, so an
      HS256 token "signed" with an RSA public key cannot verify.
    * `kid` is an opaque string looked up in the key set; `jku`, `x5u`, `jwk`, `x5c` are never used
      (and tokens carrying them are refused by default); a `crit` header is refused.
    * `exp`, `iss`, `aud`, `sub` are required; `nbf` and `iat` are checked when present; times allow
      `leeway_s` of clock skew.
    * Every rejection raises `invalid_credentials()` (same code, reason and message); only an
      unreachable JWKS with no cached key raises `auth_unavailable()`. Nothing logged or raised
      contains the token.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import jwk, jws

from homa_server.auth.jwks import (
    DecodeError,
    JwksCache,
    PublicKey,
    VerificationKey,
    b64url_decode,
    key_fits,
    select_key,
    strict_json_object,
)
from homa_server.auth.principal import AuthMethod, Principal, invalid_credentials
from homa_server.errors import GatewayError

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
SUPPORTED_ALGORITHMS: Final = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
#: Headers that point at or embed key material; never followed or used.
KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})
MIN_HMAC_SECRET_BYTES: Final = 32
MAX_KID_CHARS: Final = 256
MAX_SCOPES: Final = 256
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 scope-token


@dataclass(frozen=True)
class JwtConfig:
    """What a valid token looks like and which keys may sign it.

    Attributes:
        issuer: required exact value of `iss`.
        audiences: `aud` must contain at least one of these.
        algorithms: allow-list; a subset of `SUPPORTED_ALGORITHMS`.
        shared_secret: HMAC secret (>= 32 bytes) for HS*; never a PEM.
        public_keys: static PEM public keys by kid (a token without kid uses the only fitting key).
        jwks: a JWKS cache consulted after `public_keys`.
        leeway_s: clock skew tolerated for `exp`, `nbf`, `iat`.
        max_token_bytes: longest accepted token.
        tenant_claim: claim naming the tenant; `default_tenant` is used when it is absent.
        default_tenant: tenant for tokens without `tenant_claim`; None rejects such tokens.
        reject_key_headers: refuse tokens carrying `jku`/`x5u`/`jwk`/`x5c` (they are never used anyway).
        method: recorded in the Principal ("jwt" for Homa JWT auth, "oauth2" for access tokens).
        clock: wall clock in Unix seconds, injectable for tests.
    """

    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    shared_secret: bytes | None = None
    public_keys: Mapping[str, str | bytes] = field(default_factory=dict)
    jwks: JwksCache | None = None
    leeway_s: float = 30.0
    max_token_bytes: int = 8 * 1024
    tenant_claim: str = "tenant"
    default_tenant: str | None = None
    reject_key_headers: bool = True
    method: AuthMethod = "jwt"
    clock: Callable[[], float] = time.time


def _load_public_key(kid: str, pem: str | bytes) -> VerificationKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = load_pem_public_key(data)
    if not isinstance(key, PublicKey):
        raise ValueError(f"public key {kid!r}: only RSA and EC keys are supported")
    if not any(key_fits(alg, key) for alg in ASYMMETRIC_ALGORITHMS):
        raise ValueError(f"public key {kid!r}: RSA keys need >= 2048 bits, EC keys P-256/384/521")
    return VerificationKey(kid, key)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def text_claim(value: Any) -> str | None:
    """`value` if it is a non-empty string of at most 256 characters without control characters."""
    return value if isinstance(value, str) and _TEXT.fullmatch(value) else None


def parse_scopes(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """Scopes from `scope` (space-separated string) or else `scp` (list or string); None if malformed."""
    items: list[Any]
    if "scope" in claims:
        raw = claims["scope"]
        if not isinstance(raw, str):
            return None
        items = raw.split(" ")
    elif "scp" in claims:
        raw = claims["scp"]
        if isinstance(raw, str):
            items = raw.split(" ")
        elif isinstance(raw, list):
            items = raw
        else:
            return None
    else:
        return frozenset()
    items = [s for s in items if s != ""]
    if len(items) > MAX_SCOPES or not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in items):
        return None
    return frozenset(items)


class JwtValidator:
    """Validates signed JWTs into `Principal`s; see the module docstring for the full contract."""

    def __init__(self, config: JwtConfig) -> None:
        algorithms = frozenset(config.algorithms)
        unsupported = algorithms - SUPPORTED_ALGORITHMS
        if not algorithms or unsupported:
            raise ValueError(f"JWT algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
        if not config.issuer or not config.audiences:
            raise ValueError("JWT validation needs an issuer and at least one audience")
        if algorithms & HMAC_ALGORITHMS:
            secret = config.shared_secret
            if secret is None or len(secret) < MIN_HMAC_SECRET_BYTES:
                raise ValueError(f"HS* algorithms need a shared secret of >= {MIN_HMAC_SECRET_BYTES} bytes")
            if b"-----BEGIN" in secret or secret.startswith((b"ssh-", b"ecdsa-")):
                raise ValueError("the HMAC shared secret must not be a public key")
        if algorithms & ASYMMETRIC_ALGORITHMS and not (config.public_keys or config.jwks):
            raise ValueError("RS*/ES* algorithms need public keys or a JWKS")
        if config.leeway_s < 0 or config.leeway_s > 300:
            raise ValueError("leeway_s must be between 0 and 300 seconds")
        self._config = config
        self._algorithms = algorithms
        self._static = tuple(_load_public_key(kid, pem) for kid, pem in config.public_keys.items())

    async def validate(self, token: str) -> Principal:
        """The Principal for `token`, or `GatewayError` (UNAUTHENTICATED; UNAVAILABLE if JWKS is down)."""
        try:
            return await self._validate(token)
        except GatewayError:
            raise
        except Exception:  # any library or decoding surprise is just an invalid token
            raise invalid_credentials() from None

    async def _validate(self, token: str) -> Principal:
        cfg = self._config
        if not isinstance(token, str) or len(token) > cfg.max_token_bytes or not token.isascii():
            raise invalid_credentials()
        segments = token.split(".")
        if len(segments) != 3 or not all(segments):
            raise invalid_credentials()
        try:
            header = strict_json_object(b64url_decode(segments[0]))
            b64url_decode(segments[2])
        except DecodeError:
            raise invalid_credentials() from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise invalid_credentials()
        if "crit" in header or (cfg.reject_key_headers and KEY_HEADERS & header.keys()):
            raise invalid_credentials()
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS):
            raise invalid_credentials()
        key = await self._key_for(alg, kid)
        try:
            payload = jws.verify(token, key, algorithms=[alg])
            claims = strict_json_object(payload)
        except Exception:
            raise invalid_credentials() from None
        return self._principal(claims)

    async def _key_for(self, alg: str, kid: str | None) -> jwk.Key:
        cfg = self._config
        if alg in HMAC_ALGORITHMS:
            assert cfg.shared_secret is not None  # guaranteed by __init__
            return jwk.construct(cfg.shared_secret, alg)
        found: VerificationKey | None = select_key(self._static, kid, alg)
        if found is None and cfg.jwks is not None:
            found = await cfg.jwks.get_key(kid, alg)
        if found is None or not key_fits(alg, found.key):
            raise invalid_credentials()
        material: PublicKey = found.key
        return jwk.construct(material, alg)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        cfg = self._config
        now = cfg.clock()
        exp = _number(claims.get("exp"))
        if exp is None or now > exp + cfg.leeway_s:
            raise invalid_credentials()
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None or nbf > now + cfg.leeway_s:
                raise invalid_credentials()
        if "iat" in claims:
            iat = _number(claims["iat"])
            if iat is None or iat > now + cfg.leeway_s:
                raise invalid_credentials()
        if claims.get("iss") != cfg.issuer:
            raise invalid_credentials()
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(audiences, list)
            or not all(isinstance(a, str) for a in audiences)
            or cfg.audiences.isdisjoint(audiences)
        ):
            raise invalid_credentials()
        subject = text_claim(claims.get("sub"))
        tenant = text_claim(claims.get(cfg.tenant_claim, cfg.default_tenant))
        scopes = parse_scopes(claims)
        client_id = claims.get("client_id", claims.get("azp"))
        if subject is None or tenant is None or scopes is None:
            raise invalid_credentials()
        return Principal(
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            method=cfg.method,
            client_id=text_claim(client_id),
            expires_at=exp,
        )
