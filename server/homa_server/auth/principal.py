"""The authenticated identity of a caller, and the only errors the auth building blocks raise.

Contract:
    * `Principal` is immutable and carries no credential material (no tokens, no secrets).
    * Every authentication failure raises `GatewayError` built by `invalid_credentials()` (code
      UNAUTHENTICATED, one fixed message, reason `REASON_INVALID_CREDENTIALS`) so a caller can never
      learn which part of a credential was wrong. An outage of an identity provider (JWKS or
      introspection endpoint unreachable) raises `auth_unavailable()` (code UNAVAILABLE, retryable).
      Neither ever contains the token.

The reason strings are provisional constants until they are added to `homa_server.errors.Reason`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from homa_server.errors import Code, GatewayError, Reason

AuthMethod = Literal["api_key", "jwt", "oauth2", "mtls", "none"]

#: A presented credential (API key, JWT, opaque token) was rejected, whatever the cause.
REASON_INVALID_CREDENTIALS: Final = "INVALID_CREDENTIALS"
#: No credential was presented although the method requires one (for the interceptor).
REASON_CREDENTIALS_REQUIRED: Final = "CREDENTIALS_REQUIRED"
#: The caller is authenticated but lacks the scope, model or tenant access (for the interceptor).
REASON_PERMISSION_DENIED: Final = "PERMISSION_DENIED"
#: An identity provider needed to decide (JWKS, introspection) could not be reached; fail closed.
REASON_AUTH_UNAVAILABLE: Final = "AUTH_UNAVAILABLE"

AUTH_REASONS: Final = frozenset(
    {
        REASON_INVALID_CREDENTIALS,
        REASON_CREDENTIALS_REQUIRED,
        REASON_PERMISSION_DENIED,
        REASON_AUTH_UNAVAILABLE,
    }
)

MSG_INVALID_CREDENTIALS: Final = "invalid credentials"
MSG_CREDENTIALS_REQUIRED: Final = "credentials required"
MSG_PERMISSION_DENIED: Final = "permission denied"
MSG_AUTH_UNAVAILABLE: Final = "authentication service unavailable"


def _reason(value: str) -> Reason:
    return Reason(value)


def invalid_credentials() -> GatewayError:
    """UNAUTHENTICATED with the one generic message used for every rejected credential."""
    return GatewayError(MSG_INVALID_CREDENTIALS, Code.UNAUTHENTICATED, _reason(REASON_INVALID_CREDENTIALS))


def credentials_required() -> GatewayError:
    """UNAUTHENTICATED for a call that carried no credential at all."""
    return GatewayError(MSG_CREDENTIALS_REQUIRED, Code.UNAUTHENTICATED, _reason(REASON_CREDENTIALS_REQUIRED))


def permission_denied() -> GatewayError:
    """PERMISSION_DENIED with one generic message (never which scope, model or tenant)."""
    return GatewayError(MSG_PERMISSION_DENIED, Code.PERMISSION_DENIED, _reason(REASON_PERMISSION_DENIED))


def auth_unavailable(retry_after: float | None = None) -> GatewayError:
    """UNAVAILABLE (retryable): the identity provider could not be consulted; nothing was accepted."""
    return GatewayError(
        MSG_AUTH_UNAVAILABLE,
        Code.UNAVAILABLE,
        _reason(REASON_AUTH_UNAVAILABLE),
        retryable=True,
        retry_after=retry_after,
    )


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """`*` = any run of characters, `?` = one character, everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by one authentication method.

    Attributes:
        subject: stable identifier of the caller (JWT `sub`, key owner, certificate subject).
        tenant: the tenant whose data the caller may see; never empty.
        scopes: granted scopes such as `chat:write`.
        method: how the caller authenticated.
        key_id: the Homa API key id (never the key itself), for `api_key`.
        client_id: the OAuth2 client id, when the token names one.
        allowed_models: models the caller may use; None means no per-credential restriction.
        expires_at: Unix time after which the credential is no longer valid; None if it never expires.
        key_limits: the API key's own rate limits and budgets as sorted (name, value) pairs, names as in
            `RateLimits` / `Budgets` (`requests_per_minute`, `daily_cost_micros`, ...); empty = none.
    """

    subject: str
    tenant: str
    scopes: frozenset[str]
    method: AuthMethod
    key_id: str | None = None
    client_id: str | None = None
    allowed_models: frozenset[str] | None = None
    expires_at: float | None = None
    key_limits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.subject or not self.tenant:
            raise ValueError("Principal needs a non-empty subject and tenant")

    def has_scope(self, scope: str) -> bool:
        """Whether `scope` was granted (exact match, no wildcards)."""
        return scope in self.scopes

    def may_use_model(self, *names: str) -> bool:
        """Whether the credential's model restriction (if any) allows the model known by `names`.

        `names` are candidate names of ONE model (as requested, as resolved, `provider/model`); the
        model is allowed when any of them matches any entry of `allowed_models`. Entries are exact
        names or case-sensitive fnmatch-style globs (`openai/*`, `*-mini`, `gpt-4?`); `[...]`
        character classes are not special. No restriction (None) allows everything.
        """
        if self.allowed_models is None:
            return True
        for pattern in self.allowed_models:
            if not any(c in pattern for c in "*?"):
                if pattern in names:
                    return True
            elif any(_glob(pattern).fullmatch(name) for name in names if name):
                return True
        return False

    def __repr__(self) -> str:
        return (
            f"Principal(subject={self.subject!r}, tenant={self.tenant!r}, method={self.method!r}, "
            f"scopes={sorted(self.scopes)!r}, key_id={self.key_id!r}, client_id={self.client_id!r})"
        )
