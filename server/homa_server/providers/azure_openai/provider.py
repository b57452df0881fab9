"""`AzureOpenAIProvider`: chat (whole and streamed) and model listing for Azure OpenAI.

Wire: `POST {base_url}/deployments/{deployment}/chat/completions?api-version={api_version}`, with
`api-key: <key>` (default) or `Authorization: Bearer <Entra ID token>` (`options.auth: entra`).
Everything that does not depend on the request is computed once in `__init__`: the pooled client
with its default headers, the per-deployment URLs (cached for models met later), the body builder
for the api-version and the timeout policy.

There is no token-counting endpoint (the gateway falls back to its local estimate) and no
data-plane model listing: `list_models` returns the configured deployments without a call.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from urllib.parse import quote

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import GatewayError, upstream_interrupted
from homa_server.providers._http import (
    HTTPProvider,
    TimeoutPolicy,
    build_client,
    parse_json,
    post_within_deadline,
    upstream_timeout,
)
from homa_server.providers._sse import SSETruncated, aiter_sse
from homa_server.providers._streaming import SSE, open_stream
from homa_server.providers.azure_openai.api_versions import surface_for
from homa_server.providers.azure_openai.audio import AzureAudio
from homa_server.providers.azure_openai.chat_request import AzureChatBuilder
from homa_server.providers.azure_openai.chat_response import parse_azure_completion
from homa_server.providers.azure_openai.chat_stream import DONE, AzureChatStreamDecoder
from homa_server.providers.azure_openai.embeddings import LIMITS as EMBED_LIMITS
from homa_server.providers.azure_openai.embeddings import build_azure_embeddings_body, parse_embeddings
from homa_server.providers.azure_openai.error_mapping import Origin, error_from_response
from homa_server.providers.azure_openai.images import AzureImages
from homa_server.providers.azure_openai.options import parse_options
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.settings import ProviderSettings

__all__ = ["AzureOpenAIProvider"]

_JSON_HEADERS = {"Content-Type": "application/json"}
_USER_AGENT = "homa-gateway"
# Models met at run time that are not in `deployments`/`models` get their URL cached too, up to
# this many (a caller cycling through random names must not grow memory without bound).
_MAX_CACHED_URLS = 1024


class AzureOpenAIProvider(AzureAudio, AzureImages, HTTPProvider):
    """Adapter for the Azure OpenAI data plane (kind "azure_openai").

    Implements `ChatProvider`, `ModelListingProvider`, `EmbeddingProvider` (embeddings.py),
    `TranscriptionProvider` and `SpeechProvider` (audio.py); not `TokenCountingProvider`: Azure has
    no counting endpoint.

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (required, "https://<resource>.openai.azure.com/openai"), `api_key`
            (required: the resource key, or an Entra ID access token with `options.auth: entra`),
            `models`, extra `headers` (they override the defaults), pool limits, timeouts, and
            `options` (see `options.AzureOpenAIOptions`).

    Raises:
        ValueError: invalid settings, one line per problem (reported at start-up).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        options = parse_options(settings.options)
        base = _base_url(settings)
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not key:
            raise ValueError("api_key: required (the resource key, or an Entra ID token with auth: entra)")
        for field in ("organization", "project"):
            if getattr(settings, field):
                raise ValueError(f"{field}: not used by Azure OpenAI; remove it")
        self._name = name
        self._kind = settings.kind
        self._query = f"api-version={quote(options.api_version, safe='')}"
        self._base = base
        self._deployments = dict(options.deployments)
        self._models = list(dict.fromkeys([*options.deployments, *settings.models]))
        self._urls: dict[str, tuple[httpx.URL, Origin]] = {}
        for model in self._models:
            self._chat_target(model)
        self._builder = AzureChatBuilder(
            surface_for(options.api_version), options.api_version, options.max_tokens_field
        )
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if options.auth == "entra":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["api-key"] = key
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    async def list_models(self) -> list[str]:
        """The configured models: keys of `options.deployments`, then `models`, without duplicates.

        Azure's data plane has no model listing (deployments live in Azure Resource Manager), so no
        HTTP call is made.
        """
        return list(self._models)

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for input Azure cannot take; mapped
                upstream errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(self._builder.build(request, stream=False))
        url, origin = self._chat_target(ctx.model)
        response = await post_within_deadline(
            self._client, self._name, url, ctx, self._timeouts, content=body, headers=_JSON_HEADERS
        )
        if response.status_code >= 300:
            raise _http_error(origin, response)
        payload = parse_json(self._name, response.content)
        return parse_azure_completion(self._name, payload)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        """Stream one completion. See `ChatProvider.stream_chat` and `AzureChatStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `{"error": ...}` event; UPSTREAM_PROTOCOL_ERROR for malformed
                events; UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before `[DONE]`;
                UPSTREAM_TIMEOUT when the deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(self._builder.build(request, stream=True))
        url, origin = self._chat_target(ctx.model)
        timeout = self._timeouts.for_call(ctx)
        decoder = AzureChatStreamDecoder(origin)
        deadline = ctx.deadline
        async with open_stream(
            self._name,
            ctx,
            self._client.stream("POST", url, content=body, headers=_JSON_HEADERS, timeout=timeout),
            media_type=SSE,
            http_error=partial(_http_error, origin),
            parse=aiter_sse,
            truncated=SSETruncated,
        ) as stream:
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            if first.data == DONE:
                for event in decoder.done():
                    yield event
                await stream.drain()
                return
            for event in decoder.feed(first.data):
                yield event
            async for sse in stream.events:
                if sse.data == DONE:
                    for event in decoder.done():
                        yield event
                    await stream.drain()
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                for event in decoder.feed(sse.data):
                    yield event
            raise upstream_interrupted(self._name, "the connection closed before [DONE]")

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """2048 inputs per call."""
        return EMBED_LIMITS

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings of the deployment serving `ctx.model`. See `EmbeddingProvider.embed`."""
        body = orjson.dumps(build_azure_embeddings_body(request))
        deployment = self._deployments.get(ctx.model, ctx.model)
        path = f"/deployments/{quote(deployment, safe='')}/embeddings"
        url = httpx.URL(f"{self._base}{path}?{self._query}")
        response = await post_within_deadline(
            self._client, self._name, url, ctx, self._timeouts, content=body, headers=_JSON_HEADERS
        )
        if response.status_code >= 300:
            raise _http_error(Origin(self._name, ctx.model, deployment), response)
        return parse_embeddings(self._name, parse_json(self._name, response.content), len(request.inputs))

    def _chat_target(self, model: str) -> tuple[httpx.URL, Origin]:
        """The chat URL and error origin for homa model `model` (computed once per model)."""
        cached = self._urls.get(model)
        if cached is not None:
            return cached
        deployment = self._deployments.get(model, model)
        path = f"/deployments/{quote(deployment, safe='')}/chat/completions"
        target = (httpx.URL(f"{self._base}{path}?{self._query}"), Origin(self._name, model, deployment))
        if len(self._urls) < _MAX_CACHED_URLS:
            self._urls[model] = target
        return target


def _http_error(origin: Origin, response: httpx.Response) -> GatewayError:
    return error_from_response(origin, response.status_code, response.headers, response.content)


def _base_url(settings: ProviderSettings) -> str:
    """`settings.base_url`, required and with a path (the `/openai` of the resource endpoint)."""
    if not settings.base_url:
        raise ValueError("base_url: required, e.g. https://<resource>.openai.azure.com/openai")
    base = settings.base_url.rstrip("/")
    if not httpx.URL(base).path.strip("/"):
        raise ValueError(f"base_url: {base} has no path; Azure OpenAI endpoints end in /openai")
    return base
