"""OIDC discovery with an injected fetcher."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homa_server.auth.jwks import FetchError
from homa_server.auth.oidc import DiscoveryError, discover

ISSUER = "https://idp.test/realms/homa"


def serving(document: Any, seen: list[str] | None = None) -> Any:
    async def fetch(url: str) -> bytes:
        if seen is not None:
            seen.append(url)
        if isinstance(document, Exception):
            raise document
        return document if isinstance(document, bytes) else json.dumps(document).encode()

    return fetch


async def test_discovery_returns_endpoints_from_the_well_known_url() -> None:
    seen: list[str] = []
    meta = await discover(
        ISSUER + "/",
        serving(
            {
                "issuer": ISSUER + "/",
                "jwks_uri": "https://idp.test/certs",
                "introspection_endpoint": "https://idp.test/introspect",
            },
            seen,
        ),
    )
    assert seen == [ISSUER + "/.well-known/openid-configuration"]
    assert meta.jwks_uri == "https://idp.test/certs"
    assert meta.introspection_endpoint == "https://idp.test/introspect"


async def test_loopback_http_only_when_allowed() -> None:
    doc = {"issuer": "http://127.0.0.1:9/x", "jwks_uri": "http://127.0.0.1:9/x/certs"}
    meta = await discover("http://127.0.0.1:9/x", serving(doc), allow_http_loopback=True)
    assert meta.introspection_endpoint is None
    with pytest.raises(DiscoveryError):
        await discover("http://127.0.0.1:9/x", serving(doc))


@pytest.mark.parametrize(
    ("issuer", "document"),
    [
        ("http://idp.test", {"issuer": "http://idp.test", "jwks_uri": "https://idp.test/certs"}),
        (ISSUER, {"issuer": "https://evil.test", "jwks_uri": "https://idp.test/certs"}),
        (ISSUER, {"issuer": ISSUER}),
        (ISSUER, {"issuer": ISSUER, "jwks_uri": "http://idp.test/certs"}),
        (ISSUER, {"issuer": ISSUER, "jwks_uri": "file:///etc/passwd"}),
        (ISSUER, {"issuer": ISSUER, "jwks_uri": "https://user:pw@idp.test/certs"}),
        (ISSUER, {"issuer": ISSUER, "jwks_uri": ["https://idp.test/certs"]}),
        (ISSUER, {"issuer": ISSUER, "jwks_uri": "https://idp.test/c", "introspection_endpoint": 5}),
        (ISSUER, b"not json"),
        (ISSUER, FetchError("HTTP 500")),
        (ISSUER, TimeoutError()),
    ],
)
async def test_unacceptable_metadata_is_refused(issuer: str, document: Any) -> None:
    with pytest.raises(DiscoveryError):
        await discover(issuer, serving(document))
