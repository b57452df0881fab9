"""OIDC discovery: issuer -> `/.well-known/openid-configuration` -> jwks_uri (and introspection endpoint).

Contract of `discover(issuer, fetch)`:
    * Fetches exactly `<issuer without trailing slash>/.well-known/openid-configuration` through the
      injected `Fetcher` (bounded like every fetch) — the issuer comes from settings, never a token.
    * The document's `issuer` must equal the configured issuer exactly (OIDC Discovery §4.3), and the
      endpoints must be https URLs (http is accepted only for loopback hosts when `allow_http_loopback`).
    * Any failure raises `DiscoveryError` (a configuration/outage problem reported at startup or as
      `auth_unavailable()` by the caller), never a token-related error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from homa_server.auth.jwks import DecodeError, Fetcher, FetchError, strict_json_object

WELL_KNOWN: Final = "/.well-known/openid-configuration"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class DiscoveryError(Exception):
    """The issuer's metadata could not be fetched or is not acceptable."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of an OpenID Provider's metadata the gateway uses."""

    issuer: str
    jwks_uri: str
    introspection_endpoint: str | None = None


def _url_ok(url: Any, allow_http_loopback: bool) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    return allow_http_loopback and parts.scheme == "http" and parts.hostname in _LOOPBACK


async def discover(issuer: str, fetch: Fetcher, *, allow_http_loopback: bool = False) -> ProviderMetadata:
    """Fetch and check the provider metadata of `issuer`."""
    if not _url_ok(issuer, allow_http_loopback):
        raise DiscoveryError("issuer must be an https URL")
    try:
        document = strict_json_object(await fetch(issuer.rstrip("/") + WELL_KNOWN))
    except (FetchError, DecodeError, TimeoutError, OSError) as exc:
        raise DiscoveryError(f"discovery failed: {type(exc).__name__}") from None
    if document.get("issuer") != issuer:
        raise DiscoveryError("metadata issuer does not match the configured issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not _url_ok(jwks_uri, allow_http_loopback):
        raise DiscoveryError("metadata has no acceptable jwks_uri")
    introspection = document.get("introspection_endpoint")
    if introspection is not None and (
        not isinstance(introspection, str) or not _url_ok(introspection, allow_http_loopback)
    ):
        raise DiscoveryError("metadata has an unacceptable introspection_endpoint")
    return ProviderMetadata(issuer=issuer, jwks_uri=jwks_uri, introspection_endpoint=introspection)
