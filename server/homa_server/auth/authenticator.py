"""From an `authorization` header value to a `Principal`, with the methods configured in settings.

Contract of `Authenticator.authenticate(authorization, scope) -> Principal`:
    * `authorization` is the raw header value or None. None (or empty) raises `credentials_required()`
      unless mode `none` is configured, which then yields the anonymous Principal (every scope).
    * With mode `mtls`, a call without `authorization` is identified by its verified client
      certificate instead (`peer()` returns gRPC's `auth_context()`; auth/mtls.py); with no client
      certificate, mode `none` (if also configured) yields the anonymous Principal, else
      `credentials_required()`. A bearer token, when present, is always validated as below and
      the certificate is then not consulted.
    * The value must be `Bearer <token>` (scheme case-insensitive, one space-free token); anything
      else raises `invalid_credentials()`.
    * A token starting with `homa_sk_` is a Homa API key: verified by auth/api_keys.py when mode
      `api_key` is configured, else rejected with `invalid_credentials()`.
    * A JWT-shaped token (three dot-separated segments) is validated by the JWT validator whose
      issuer matches its unverified `iss` (only used to choose; the chosen validator checks
      everything), or the only one configured; without a JWT validator it is introspected when
      introspection is configured. An opaque token is introspected, or rejected.
    * The Principal must hold `scope`, else `permission_denied()`.
    * Errors are the generic ones of `homa_server.auth.principal`; nothing contains the token.

`build_authenticator(settings, database)` builds validators once at start-up (OIDC discovery
included) and owns the HTTP client used for JWKS and introspection; `aclose()` releases it. Mode
`api_key` needs the open `database`. Modes `none` + `api_key`: no credential is the anonymous
Principal, a key is that key's Principal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import httpx

from homa_server.auth.api_keys import SECRET_PREFIX, ApiKeyVerifier
from homa_server.auth.introspection import IntrospectionConfig, Introspector, httpx_poster
from homa_server.auth.jwks import JwksCache, b64url_decode, httpx_fetcher, strict_json_object
from homa_server.auth.jwt_validator import JwtConfig, JwtValidator
from homa_server.auth.mtls import AuthContext, CertificateIdentities
from homa_server.auth.oidc import DiscoveryError, discover
from homa_server.auth.policy import ScopePolicy
from homa_server.auth.principal import (
    Principal,
    credentials_required,
    invalid_credentials,
    permission_denied,
)
from homa_server.auth.tenancy import CROSS_TENANT_SCOPE
from homa_server.settings import AuthSettings
from homa_server.store.api_keys import ApiKeyRepository
from homa_server.store.database import Database

log = logging.getLogger("homa.auth")

ANONYMOUS_SUBJECT: Final = "anonymous"
DEFAULT_TENANT: Final = "default"


def anonymous_principal(policy: ScopePolicy) -> Principal:
    """The caller in mode `none`: every scope of the policy and every tenant, no model restriction."""
    return Principal(
        subject=ANONYMOUS_SUBJECT,
        tenant=DEFAULT_TENANT,
        scopes=policy.all_scopes | {CROSS_TENANT_SCOPE},
        method="none",
    )


def _unverified_issuer(token: str) -> str | None:
    """The `iss` of a JWT payload without verification: used only to choose a validator."""
    try:
        issuer = strict_json_object(b64url_decode(token.split(".")[1])).get("iss")
    except (ValueError, IndexError):
        return None
    return issuer if isinstance(issuer, str) else None


class Authenticator:
    """The configured authentication methods (see the module docstring)."""

    def __init__(
        self,
        policy: ScopePolicy,
        *,
        allow_anonymous: bool,
        jwt_validators: dict[str, JwtValidator] | None = None,
        introspector: Introspector | None = None,
        max_token_bytes: int = 8192,
        client: httpx.AsyncClient | None = None,
        certificates: CertificateIdentities | None = None,
        api_keys: ApiKeyVerifier | None = None,
    ) -> None:
        self.policy = policy
        self.anonymous: Principal | None = anonymous_principal(policy) if allow_anonymous else None
        self._validators = dict(jwt_validators or {})
        self._only_validator = next(iter(self._validators.values())) if len(self._validators) == 1 else None
        self._introspector = introspector
        self._max_token_bytes = max_token_bytes
        self._client = client
        self.certificates = certificates
        self.api_keys = api_keys

    @property
    def open_to_all(self) -> bool:
        """True in pure mode `none`: no credential is ever checked."""
        return (
            self.anonymous is not None
            and not self._validators
            and self._introspector is None
            and self.certificates is None
            and self.api_keys is None
        )

    async def authenticate(
        self, authorization: str | None, scope: str, peer: Callable[[], AuthContext] | None = None
    ) -> Principal:
        """The caller's Principal holding `scope`; raises the generic auth errors otherwise.

        `peer` returns the call's TLS auth context; it is called only in mode `mtls` for a call
        without `authorization`.
        """
        principal = await self.identify(authorization, peer)
        self.authorize(principal, scope)
        return principal

    async def identify(
        self, authorization: str | None, peer: Callable[[], AuthContext] | None = None
    ) -> Principal:
        """Who is calling (no scope check); raises the generic UNAUTHENTICATED errors otherwise."""
        if not authorization:
            return self._without_token(peer)
        return await self._validate(authorization)

    @staticmethod
    def authorize(principal: Principal, scope: str) -> None:
        """Raise `permission_denied()` unless `principal` holds `scope`."""
        if scope not in principal.scopes:
            raise permission_denied()

    def _without_token(self, peer: Callable[[], AuthContext] | None) -> Principal:
        if self.certificates is not None and peer is not None:
            principal = self.certificates.principal(peer())
            if principal is not None:
                return principal
        if self.anonymous is None:
            raise credentials_required()
        return self.anonymous

    async def _validate(self, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token or len(token) > self._max_token_bytes:
            raise invalid_credentials()
        if token.startswith(SECRET_PREFIX):
            if self.api_keys is None:
                raise invalid_credentials()
            return await self.api_keys.verify(token)
        if token.count(".") == 2 and self._validators:
            validator = self._validators.get(_unverified_issuer(token) or "", self._only_validator)
            if validator is None:
                raise invalid_credentials()
            return await validator.validate(token)
        if self._introspector is not None:
            return await self._introspector.introspect(token)
        raise invalid_credentials()

    async def aclose(self) -> None:
        """Close the HTTP client used for JWKS and introspection; finish API key bookkeeping."""
        try:
            if self.api_keys is not None:
                await self.api_keys.aclose()
        finally:
            if self._client is not None:
                await self._client.aclose()


async def build_authenticator(settings: AuthSettings, database: Database | None = None) -> Authenticator:
    """Build every configured method once (OIDC discovery runs here); mode `api_key` verifies keys
    stored in `database`.

    Raises:
        ValueError: an invalid combination (bad key, short secret, unknown scope override...) or
            OAuth2 issuer metadata that could not be fetched or used, or mode `api_key` without
            a database.
    """
    policy = ScopePolicy(settings.scopes)
    modes = set(settings.mode)
    if modes == {"none"}:
        return Authenticator(policy, allow_anonymous=True)
    api_keys: ApiKeyVerifier | None = None
    if "api_key" in modes:
        if database is None:
            raise ValueError("auth.mode api_key needs the database (storage)")
        api_keys = ApiKeyVerifier(
            ApiKeyRepository(database),
            cache_ttl_s=settings.api_key.cache_ttl_s,
            cache_size=settings.api_key.cache_size,
            last_use_interval_s=settings.api_key.last_use_interval_s,
        )
    client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
    try:
        validators: dict[str, JwtValidator] = {}
        introspector: Introspector | None = None
        max_bytes = 0
        certificates = CertificateIdentities(settings.mtls.identities) if "mtls" in modes else None
        if "jwt" in modes:
            jwt = settings.jwt
            jwks = JwksCache(jwt.jwks_url, httpx_fetcher(client)) if jwt.jwks_url else None
            secret = jwt.shared_secret.get_secret_value().encode() if jwt.shared_secret else None
            validators[jwt.issuer] = JwtValidator(
                JwtConfig(
                    issuer=jwt.issuer,
                    audiences=frozenset(jwt.audiences),
                    algorithms=frozenset(jwt.algorithms),
                    shared_secret=secret,
                    public_keys=dict(jwt.public_keys),
                    jwks=jwks,
                    leeway_s=jwt.clock_skew_s,
                    max_token_bytes=jwt.max_token_bytes,
                    tenant_claim=jwt.tenant_claim,
                    default_tenant=jwt.default_tenant,
                    method="jwt",
                )
            )
            max_bytes = max(max_bytes, jwt.max_token_bytes)
        if "oauth2" in modes:
            oauth = settings.oauth2
            jwks_url, introspection_url = oauth.jwks_url, oauth.introspection_url
            if oauth.issuer and jwks_url is None:
                try:
                    metadata = await discover(oauth.issuer, httpx_fetcher(client), allow_http_loopback=True)
                except DiscoveryError as exc:
                    raise ValueError(f"auth.oauth2.issuer: {exc}") from None
                jwks_url = metadata.jwks_uri
                if introspection_url is None and oauth.client_id:
                    introspection_url = metadata.introspection_endpoint
            if oauth.issuer and jwks_url:
                if oauth.issuer in validators:
                    raise ValueError("auth.jwt.issuer and auth.oauth2.issuer must differ")
                validators[oauth.issuer] = JwtValidator(
                    JwtConfig(
                        issuer=oauth.issuer,
                        audiences=frozenset(oauth.audiences),
                        algorithms=frozenset(oauth.algorithms),
                        jwks=JwksCache(jwks_url, httpx_fetcher(client)),
                        leeway_s=oauth.clock_skew_s,
                        max_token_bytes=oauth.max_token_bytes,
                        tenant_claim=oauth.tenant_claim,
                        default_tenant=oauth.default_tenant,
                        method="oauth2",
                    )
                )
            if introspection_url is not None and oauth.client_id and oauth.client_secret:
                introspector = Introspector(
                    IntrospectionConfig(
                        endpoint=introspection_url,
                        client_id=oauth.client_id,
                        client_secret=oauth.client_secret.get_secret_value(),
                        max_cache_ttl_s=oauth.cache_ttl_s,
                        negative_cache_ttl_s=oauth.negative_cache_ttl_s,
                        timeout_s=oauth.timeout_s,
                        max_token_bytes=oauth.max_token_bytes,
                        issuer=oauth.issuer,
                        tenant_claim=oauth.tenant_claim,
                        default_tenant=oauth.default_tenant,
                    ),
                    httpx_poster(client, timeout_s=oauth.timeout_s),
                )
            max_bytes = max(max_bytes, oauth.max_token_bytes)
        log.info("authentication configured", extra={"modes": sorted(modes)})
        return Authenticator(
            policy,
            allow_anonymous="none" in modes,
            jwt_validators=validators,
            introspector=introspector,
            max_token_bytes=max_bytes or 8192,
            client=client,
            certificates=certificates,
            api_keys=api_keys,
        )
    except BaseException:
        await client.aclose()
        raise
