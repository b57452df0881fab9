"""An in-process gateway in JWT mode (HS256, the shared test secret) and tokens for it: the way tests
act as different principals and tenants."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from grpc import aio

from homa_server.app import start, stop
from tests.conftest import RunningServer, make_settings
from tests.unit.auth import AUDIENCE, HMAC_SECRET, ISSUER, hs_signer, make_token

JWT_MODE: dict[str, Any] = {
    "auth.mode": ["jwt"],
    "auth.jwt.issuer": ISSUER,
    "auth.jwt.audiences": [AUDIENCE],
    "auth.jwt.algorithms": ["HS256"],
    "auth.jwt.shared_secret": HMAC_SECRET.decode(),
}


@asynccontextmanager
async def jwt_gateway(**overrides: Any) -> AsyncIterator[RunningServer]:
    """A started gateway accepting HS256 tokens from `token()`; `overrides` as for make_settings."""
    gateway, built = await start(make_settings(**{**JWT_MODE, **overrides}))
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def token(scope: str, tenant: str = "acme", subject: str = "user-1") -> str:
    """A valid token for `jwt_gateway` (5 minutes)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "tenant": tenant,
        "exp": now + 300,
        "iat": now,
        "scope": scope,
    }
    return make_token({"alg": "HS256", "typ": "JWT"}, claims, hs_signer(HMAC_SECRET))


def bearer(scope: str, tenant: str = "acme", subject: str = "user-1") -> tuple[tuple[str, str]]:
    """Call metadata carrying `token(...)`."""
    return (("authorization", f"Bearer {token(scope, tenant, subject)}"),)
