"""OAuth2 client-credentials grant (RFC 6749 §4.4): access tokens for `token_provider=`.

    credentials = ClientCredentials(
        "https://idp.example/oauth2/token", "my-service", secret, scope="chat:write"
    )
    async with AsyncHomaClient(target, token_provider=credentials) as client:
        ...

The token is fetched on the first call, cached, and fetched again `refresh_margin_s` seconds
before its `expires_in` runs out (at most half its lifetime early). Concurrent callers share one
fetch (an `asyncio.Lock` for `token()`, a `threading.Lock` for `token_sync()`).

Failures raise `UnauthenticatedError` with reason `TOKEN_ENDPOINT_ERROR` (the endpoint answered
with an HTTP error, a body that is not a JSON object, no `access_token`, or a `token_type` other
than Bearer) or `UnavailableError` with reason `TOKEN_ENDPOINT_UNAVAILABLE` (connection failure or
timeout; retryable). Neither the client secret nor any token appears in messages, logs or `repr`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote_plus

import grpc
import httpx

from homa_client.errors import UnauthenticatedError, UnavailableError

TOKEN_ENDPOINT_ERROR = "TOKEN_ENDPOINT_ERROR"  # noqa: S105 - an error reason, not a secret
TOKEN_ENDPOINT_UNAVAILABLE = "TOKEN_ENDPOINT_UNAVAILABLE"  # noqa: S105

AuthMethod = Literal["client_secret_basic", "client_secret_post"]

DEFAULT_LIFETIME_S = 300.0  # used when the endpoint sends no `expires_in`
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")  # RFC 6749 §5.2 error codes; anything else is not echoed


@runtime_checkable
class TokenProvider(Protocol):
    """Something that hands out bearer tokens for `token_provider=` (e.g. `ClientCredentials`)."""

    async def token(self) -> str:
        """A valid access token (async client)."""
        ...

    def token_sync(self) -> str:
        """A valid access token (blocking client)."""
        ...

    def invalidate(self, token: str | None = None) -> None:
        """Forget `token` if it is the cached one (any cached token when None)."""
        ...


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    refresh_at: float


def _endpoint_error(message: str) -> UnauthenticatedError:
    return UnauthenticatedError(message, code=grpc.StatusCode.UNAUTHENTICATED, reason=TOKEN_ENDPOINT_ERROR)


def _unavailable(exc: httpx.HTTPError) -> UnavailableError:
    return UnavailableError(
        f"token endpoint unreachable ({type(exc).__name__})",
        code=grpc.StatusCode.UNAVAILABLE,
        reason=TOKEN_ENDPOINT_UNAVAILABLE,
        retryable=True,
    )


class ClientCredentials:
    """OAuth2 client-credentials token source; pass it as `token_provider=` to either client.

    Args:
        token_url: the authorisation server's token endpoint.
        client_id: the client identifier.
        client_secret: the client secret (kept private: not in `repr`, messages or logs).
        scope: requested scope, a space-separated string or a sequence of scopes.
        audience: `audience` form parameter (Auth0/Okta style), when the server needs one.
        auth_method: "client_secret_basic" (HTTP Basic, RFC 6749 §2.3.1) or "client_secret_post"
            (client_id/client_secret in the form body).
        timeout: seconds for the token request.
        refresh_margin_s: fetch a new token this long before the cached one expires (capped at
            half the token's lifetime).
        clock: monotonic clock in seconds (for tests).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | Sequence[str] | None = None,
        audience: str | None = None,
        auth_method: AuthMethod = "client_secret_basic",
        timeout: float = 10.0,
        refresh_margin_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError("auth_method must be 'client_secret_basic' or 'client_secret_post'")
        if not token_url or not client_id:
            raise ValueError("token_url and client_id are required")
        if timeout <= 0 or refresh_margin_s < 0:
            raise ValueError("timeout must be positive and refresh_margin_s not negative")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self.audience = audience
        self.auth_method: AuthMethod = auth_method
        self.timeout = timeout
        self.refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._cached: _Cached | None = None
        self._thread_lock = threading.Lock()
        self._async_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self.fetches = 0  # token requests made (successful or not), for metrics and tests

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"scope={self.scope!r}, audience={self.audience!r}, auth_method={self.auth_method!r})"
        )

    # -- cache ---------------------------------------------------------------------------------

    def _fresh(self) -> str | None:
        cached = self._cached
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.token
        return None

    def invalidate(self, token: str | None = None) -> None:
        """Drop the cached token (only if it is `token`, when given), so the next call fetches anew."""
        cached = self._cached
        if cached is not None and (token is None or cached.token == token):
            self._cached = None

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._thread_lock:
            lock = self._async_locks.get(loop)
            if lock is None:
                # A lock is bound to one loop; dead loops are dropped so they are not kept alive.
                self._async_locks = {k: v for k, v in self._async_locks.items() if not k.is_closed()}
                lock = self._async_locks[loop] = asyncio.Lock()
            return lock

    async def token(self) -> str:
        """A valid access token, fetched (once for all concurrent callers) when none is cached.

        Raises:
            UnauthenticatedError: reason TOKEN_ENDPOINT_ERROR.
            UnavailableError: reason TOKEN_ENDPOINT_UNAVAILABLE.
        """
        if (token := self._fresh()) is not None:
            return token
        async with self._async_lock():
            if (token := self._fresh()) is not None:
                return token
            self.fetches += 1
            try:
                async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                    response = await http.post(self.token_url, **self._request())
            except httpx.HTTPError as exc:
                raise _unavailable(exc) from None
            return self._store(response)

    def token_sync(self) -> str:
        """A valid access token for the blocking client; see `token`."""
        if (token := self._fresh()) is not None:
            return token
        with self._thread_lock:
            if (token := self._fresh()) is not None:
                return token
            self.fetches += 1
            try:
                with httpx.Client(timeout=self.timeout, follow_redirects=False) as http:
                    response = http.post(self.token_url, **self._request())
            except httpx.HTTPError as exc:
                raise _unavailable(exc) from None
            return self._store(response)

    # -- protocol ------------------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts are form-urlencoded before the Basic encoding.
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        return {"data": form, "headers": headers}

    def _store(self, response: httpx.Response) -> str:
        try:
            body: object = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            detail = f" ({error})" if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else ""
            raise _endpoint_error(f"token endpoint answered HTTP {response.status_code}{detail}")
        if not isinstance(body, dict):
            raise _endpoint_error("token endpoint answered with a body that is not a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise _endpoint_error("token endpoint answer has no access_token")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            shown = (
                token_type
                if isinstance(token_type, str) and _ERROR_CODE.fullmatch(token_type.lower())
                else "?"
            )
            raise _endpoint_error(f"token endpoint issued token_type {shown!r}, not Bearer")
        lifetime = body.get("expires_in", DEFAULT_LIFETIME_S)
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime < 0:
            raise _endpoint_error("token endpoint answer has an invalid expires_in")
        margin = min(self.refresh_margin_s, lifetime / 2)
        self._cached = _Cached(token, self._clock() + lifetime - margin)
        return token


__all__ = [
    "DEFAULT_LIFETIME_S",
    "TOKEN_ENDPOINT_ERROR",
    "TOKEN_ENDPOINT_UNAVAILABLE",
    "AuthMethod",
    "ClientCredentials",
    "TokenProvider",
]
