"""Authentication building blocks: Principal, JWT validation, JWKS, OIDC discovery, introspection.

See docs/security-auth-design.md. Interceptors (rpc/) use these; nothing here knows about gRPC.
"""

from homa_server.auth.introspection import IntrospectionConfig, Introspector, httpx_poster
from homa_server.auth.jwks import FetchError, JwksCache, httpx_fetcher
from homa_server.auth.jwt_validator import JwtConfig, JwtValidator
from homa_server.auth.oidc import DiscoveryError, ProviderMetadata, discover
from homa_server.auth.principal import (
    AUTH_REASONS,
    REASON_AUTH_UNAVAILABLE,
    REASON_CREDENTIALS_REQUIRED,
    REASON_INVALID_CREDENTIALS,
    REASON_PERMISSION_DENIED,
    Principal,
    auth_unavailable,
    credentials_required,
    invalid_credentials,
    permission_denied,
)

__all__ = [
    "AUTH_REASONS",
    "REASON_AUTH_UNAVAILABLE",
    "REASON_CREDENTIALS_REQUIRED",
    "REASON_INVALID_CREDENTIALS",
    "REASON_PERMISSION_DENIED",
    "DiscoveryError",
    "FetchError",
    "IntrospectionConfig",
    "Introspector",
    "JwksCache",
    "JwtConfig",
    "JwtValidator",
    "Principal",
    "ProviderMetadata",
    "auth_unavailable",
    "credentials_required",
    "discover",
    "httpx_fetcher",
    "httpx_poster",
    "invalid_credentials",
    "permission_denied",
]
