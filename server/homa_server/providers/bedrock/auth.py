"""Authentication for Bedrock: AWS Signature Version 4 computed by botocore, or a Bedrock API key.

SigV4 (`SigV4Auth`, an `httpx.Auth`): each request is signed just before it is sent. The signer
copies the exact method, URL path, query parameters, headers and body of the httpx request into a
`botocore.awsrequest.AWSRequest`, lets `botocore.auth.SigV4Auth` (signing name
"bedrock") add `Authorization`, `X-Amz-Date` and `X-Amz-Security-Token`, and copies those three
headers back. No signing is written by hand. Headers that clients or proxies may rewrite
(`accept*`, `connection`, `content-length`, `user-agent`) are left unsigned, so the signed set is
the one botocore's own clients sign: `content-type;host;x-amz-date[;x-amz-security-token]`
(plus any extra headers from settings).

Credentials are resolved once, at start-up (`resolve_credentials`): static keys from the options,
else botocore's default chain (environment, shared config and SSO, web identity, container and
instance roles). Refreshable credentials are honoured: every request signs with a frozen
snapshot, and when botocore says a refresh is due the refresh (which may call STS or the
instance metadata service) runs in a worker thread so the event loop never blocks on it.

Bearer: with `settings.api_key` (a Bedrock API key), requests carry `Authorization: Bearer <key>`
instead (set once as a default header by the provider); no AWS credentials are needed then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import httpx
from botocore.auth import SigV4Auth as _BotocoreSigV4  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials, RefreshableCredentials  # type: ignore[import-untyped]

__all__ = ["SIGNING_NAME", "SigV4Auth", "resolve_credentials"]

SIGNING_NAME = "bedrock"  # the service model's signingName, for runtime and control plane alike
# Not signed: rewritten by HTTP clients or proxies, and not signed by botocore's clients either.
_UNSIGNED = frozenset({"accept", "accept-encoding", "connection", "content-length", "user-agent"})
_AUTH_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


def resolve_credentials(provider: str, static_keys: tuple[str, str, str | None] | None) -> Any:
    """The botocore credentials to sign with (resolved once, at start-up).

    Args:
        provider: instance name, for the error message.
        static_keys: access key id, secret access key and optional session token from the
            options; None to use botocore's default credential chain.

    Raises:
        ValueError: no credentials anywhere (reported at start-up, not per request).
    """
    if static_keys is not None:
        access_key, secret_key, token = static_keys
        return Credentials(access_key, secret_key, token, method="homa-options")
    credentials = botocore.session.Session().get_credentials()
    if credentials is None:
        raise ValueError(
            f"providers.{provider}: no AWS credentials found; set api_key (a Bedrock API key), "
            "options.access_key_id and options.secret_access_key, or configure the AWS credential "
            "chain (environment, shared config/SSO, web identity, container or instance role)"
        )
    return credentials


class SigV4Auth(httpx.Auth):
    """Signs each httpx request with botocore's SigV4 signer.

    Args:
        credentials: botocore `Credentials` or `RefreshableCredentials`.
        region: the signing region.
    """

    requires_request_body = True  # the payload hash is part of the signature

    def __init__(self, credentials: Any, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._refreshable = isinstance(credentials, RefreshableCredentials)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign for a synchronous client (a due refresh blocks the calling thread)."""
        request.read()
        self.sign(request, self._credentials.get_frozen_credentials())
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Sign for the async client; a due credential refresh runs off the event loop."""
        await request.aread()
        if self._refreshable and self._credentials.refresh_needed():
            frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
        else:
            frozen = self._credentials.get_frozen_credentials()
        self.sign(request, frozen)
        yield request

    def sign(self, request: httpx.Request, frozen: Any) -> None:
        """Add the SigV4 headers to `request` in place, signing with `frozen` credentials."""
        headers = {name: value for name, value in request.headers.items() if name not in _UNSIGNED}
        url = request.url
        # The query goes in decoded, as params: botocore then encodes it strictly (RFC 3986), the
        # way AWS canonicalises whatever spelling arrives on the wire.
        aws_request = AWSRequest(
            method=request.method,
            url=str(url.copy_with(query=None)),
            headers=headers,
            data=request.content,
            params=list(url.params.multi_items()),
        )
        _BotocoreSigV4(frozen, SIGNING_NAME, self._region).add_auth(aws_request)
        for name in _AUTH_HEADERS:
            value = aws_request.headers.get(name)
            if value is not None:
                request.headers[name] = value
