"""`GeminiProvider`: chat (whole and streamed), token counting and model listing over the Gemini API
(Generative Language API v1beta).

Endpoints (relative to `base_url`, default https://generativelanguage.googleapis.com/v1beta):
`POST models/{model}:generateContent`, `POST models/{model}:streamGenerateContent?alt=sse`,
`POST models/{model}:countTokens`, `GET models?pageSize=&pageToken=`. Authentication is the
`x-goog-api-key` header (never the `?key=` query parameter, which would put the key in URLs and
logs). Everything that does not depend on the request is computed once: the pooled client with
its default headers, the timeout policy and the options; per-model URLs are built on first use
and cached.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import GatewayError, upstream_interrupted
from homa_server.providers._http import (
    HTTPProvider,
    TimeoutPolicy,
    build_client,
    get_response,
    parse_json,
    post_within_deadline,
    upstream_timeout,
)
from homa_server.providers._sse import SSEEvent, SSETruncated, aiter_sse
from homa_server.providers._streaming import SSE, open_stream
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.gemini.audio import GeminiAudio
from homa_server.providers.gemini.chat_request import build_chat_body, build_count_body, model_path
from homa_server.providers.gemini.chat_response import parse_response
from homa_server.providers.gemini.chat_stream import GeminiStreamDecoder
from homa_server.providers.gemini.embeddings import LIMITS as EMBED_LIMITS
from homa_server.providers.gemini.embeddings import build_batch_embed_body, parse_batch_embed_response
from homa_server.providers.gemini.error_mapping import error_from_response, protocol_error
from homa_server.providers.gemini.images import GeminiImages
from homa_server.providers.gemini.options import parse_options
from homa_server.providers.gemini.validation import validate_model
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "GeminiProvider"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

_USER_AGENT = "homa-gateway"
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# No Accept header on streams (httpx sends */*): Google's own examples send none, and `alt=sse`
# alone selects the framing.
_SSE_HEADERS = {"Content-Type": "application/json"}
_SSE_PARAMS = {"alt": "sse"}
_LIST_HEADERS = {"Accept": "application/json"}
_MAX_CACHED_MODELS = 256
_AFTER_FINISH_S = 0.5


@dataclass(frozen=True, slots=True)
class _ModelURLs:
    generate: httpx.URL
    stream: httpx.URL
    count: httpx.URL
    embed: httpx.URL


class GeminiProvider(GeminiAudio, GeminiImages, HTTPProvider):
    """Adapter for the Gemini API.

    Implements `ChatProvider`, `TokenCountingProvider`, `ModelListingProvider`,
    `EmbeddingProvider` (`batchEmbedContents`, see embeddings.py) and `TranscriptionProvider`
    (audio.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (default Google's v1beta endpoint), `api_key` (required for Google's
            endpoint; optional for a custom `base_url`, e.g. a proxy that adds credentials), extra
            `headers` (they override the defaults), pool limits, timeouts and `options` (see
            options.py).

    Raises:
        ValueError: invalid `options`, no API key for Google's own endpoint, or OpenAI-only
            settings (`organization`, `project`).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        self._options = parse_options(name, settings.options)
        self._base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._models_url = httpx.URL(f"{self._base}/models")
        self._urls: dict[str, _ModelURLs] = {}
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not key and settings.base_url is None:
            raise ValueError(f"providers.{name}.api_key: required for the Gemini API")
        for field in ("organization", "project"):
            # OpenAI settings; accepting them silently would hide a misconfigured instance.
            if getattr(settings, field):
                raise ValueError(f"providers.{name}.{field}: not used by the Gemini adapter; remove it")
        headers = {"User-Agent": _USER_AGENT}
        if key:
            headers["x-goog-api-key"] = key
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One generation via `generateContent`. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for invalid input; CONTENT_FILTERED
                for a blocked prompt; mapped upstream errors otherwise (see error_mapping);
                UPSTREAM_TIMEOUT past the deadline.
        """
        urls = self._model_urls(ctx.model)
        body = orjson.dumps(build_chat_body(request, self._options))
        payload = await self._post_json(urls.generate, body, ctx)
        return parse_response(self._name, ctx.model, payload)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        """Stream one generation via `streamGenerateContent?alt=sse`. See `ChatProvider.stream_chat`
        and `GeminiStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `{"error": ...}` event; CONTENT_FILTERED for a blocked prompt;
                UPSTREAM_PROTOCOL_ERROR for malformed events; UPSTREAM_STREAM_INTERRUPTED when the
                body ends or breaks before a chunk carried `finishReason`; UPSTREAM_TIMEOUT when the
                deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        urls = self._model_urls(ctx.model)
        body = orjson.dumps(build_chat_body(request, self._options))
        timeout = self._timeouts.for_call(ctx)
        decoder = GeminiStreamDecoder(self._name, ctx.model)
        deadline = ctx.deadline
        # Once a chunk carried finishReason the answer is whole: a failing tail is ignored.
        async with open_stream(
            self._name,
            ctx,
            self._client.stream("POST", urls.stream, content=body, headers=_SSE_HEADERS, timeout=timeout),
            media_type=SSE,
            http_error=lambda response: self._http_error(response, ctx.model),
            parse=aiter_sse,
            truncated=SSETruncated,
            complete=lambda: decoder.finished,
        ) as stream:
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            for event in decoder.feed(first.data):
                yield event
            while (sse := await _next_event(stream.events, decoder.finished)) is not None:
                if deadline is not None and not decoder.finished and time.monotonic() >= deadline:
                    raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                for event in decoder.feed(sse.data):
                    yield event
        # Gemini has no terminator: the answer is complete once a chunk carried finishReason and
        # the body ended. A body that ends (or breaks) before that is an interruption.
        if not decoder.finished:
            raise upstream_interrupted(self._name, "the connection closed before a finishReason")
        for event in decoder.done():
            yield event

    async def count_tokens(
        self, request: chat_pb2.CountTokensRequest, ctx: CallContext
    ) -> chat_pb2.CountTokensResponse:
        """Exact input tokens via `countTokens` (system instruction and tools included)."""
        urls = self._model_urls(ctx.model)
        body = orjson.dumps(build_count_body(request, ctx.model))
        payload = await self._post_json(urls.count, body, ctx)
        tokens = payload.get("totalTokens", 0) if isinstance(payload, dict) else None
        if not isinstance(tokens, int):
            raise protocol_error(self._name, "the token count response has no integer totalTokens")
        return chat_pb2.CountTokensResponse(input_tokens=tokens, exact=True, method="provider")

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """100 inputs per batch (the API's limit)."""
        return EMBED_LIMITS

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via `batchEmbedContents`. See `EmbeddingProvider.embed` and embeddings.py."""
        urls = self._model_urls(ctx.model)
        body = orjson.dumps(build_batch_embed_body(request, ctx.model))
        payload = await self._post_json(urls.embed, body, ctx)
        return parse_batch_embed_response(self._name, payload, len(request.inputs), ctx.model)

    async def list_models(self) -> list[str]:
        """Model ids from `GET models`, every page, without the "models/" prefix, in Google's order."""
        models: list[str] = []
        params = {"pageSize": str(self._options.models_page_size)}
        while True:
            response = await get_response(
                self._client, self._name, self._models_url, params=params, headers=_LIST_HEADERS
            )
            if response.status_code >= 300:
                raise self._http_error(response, "")
            payload = parse_json(self._name, response.content)
            if not isinstance(payload, dict) or not isinstance(payload.get("models", []), list):
                raise protocol_error(self._name, "the model list has no `models` array")
            for item in payload.get("models", []):
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str):
                    models.append(name.removeprefix("models/"))
            token = payload.get("nextPageToken")
            if not token or not isinstance(token, str) or token == params.get("pageToken"):
                return models  # the last repeat check stops a server that hands out the same page
            params["pageToken"] = token

    def _model_urls(self, model: str) -> _ModelURLs:
        """The endpoint URLs of `model`, built once per model.

        Raises:
            GatewayError: INVALID_ARGUMENT when `model` is not a Gemini model id.
        """
        urls = self._urls.get(model)
        if urls is None:
            validate_model(model)
            prefix = f"{self._base}/{model_path(model)}"
            urls = _ModelURLs(
                generate=httpx.URL(f"{prefix}:generateContent"),
                stream=httpx.URL(f"{prefix}:streamGenerateContent", params=_SSE_PARAMS),
                count=httpx.URL(f"{prefix}:countTokens"),
                embed=httpx.URL(f"{prefix}:batchEmbedContents"),
            )
            if len(self._urls) < _MAX_CACHED_MODELS:
                self._urls[model] = urls
        return urls

    async def _post_json(self, url: httpx.URL, body: bytes, ctx: CallContext) -> Any:
        """POST `body`, return the parsed JSON of a 2xx answer, map everything else."""
        response = await post_within_deadline(
            self._client, self._name, url, ctx, self._timeouts, content=body, headers=_JSON_HEADERS
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        return parse_json(self._name, response.content)

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name, model, response.status_code, response.headers, response.content
        )


async def _next_event(events: AsyncIterator[SSEEvent], finished: bool) -> SSEEvent | None:
    """The next SSE event, or None at the end of the body.

    Once a chunk carried `finishReason` the answer is complete; what may follow (the end of the
    chunked body, rarely a trailing chunk) is awaited for `_AFTER_FINISH_S` at most, so a proxy
    that keeps the connection open cannot hold the finished stream back.
    """
    if not finished:
        return await anext(events, None)
    try:
        async with asyncio.timeout(_AFTER_FINISH_S):
            return await anext(events, None)
    except TimeoutError:
        return None
