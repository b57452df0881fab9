"""`VeniceProvider`: chat (whole and streamed) and model listing over Venice's HTTP API.

Everything that does not depend on the request is computed once in `__init__`: the validated
options, the pooled client with its default headers (`Authorization: Bearer <key>`, then
`settings.headers`), the endpoint URLs and the timeout policy. Venice has no token-counting
endpoint, so this class does not implement `TokenCountingProvider` (the gateway estimates locally).

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once; `CancelledError` is never
swallowed.

Venice blocks a key for 30 s after more than 20 failed requests in 30 s, so nothing here retries:
retries are the router's decision, made on the mapped error's `retryable` and `retry_after`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import GatewayError, upstream_interrupted
from homa_server.providers._errors import protocol_error
from homa_server.providers._http import (
    HTTPProvider,
    TimeoutPolicy,
    build_client,
    get_response,
    parse_json,
    post_within_deadline,
    upstream_timeout,
)
from homa_server.providers._sse import SSETruncated, aiter_sse
from homa_server.providers._streaming import SSE, open_stream
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.venice.chat_request import VeniceBody, build_venice_body
from homa_server.providers.venice.chat_response import parse_venice_completion
from homa_server.providers.venice.chat_stream import DONE, VeniceStreamDecoder
from homa_server.providers.venice.embeddings import LIMITS as EMBED_LIMITS
from homa_server.providers.venice.embeddings import build_venice_embeddings_body, parse_embeddings
from homa_server.providers.venice.error_mapping import error_from_response
from homa_server.providers.venice.images import VeniceImages
from homa_server.providers.venice.options import parse_options
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "VeniceProvider"]

DEFAULT_BASE_URL = "https://api.venice.ai/api/v1"

log = logging.getLogger("homa.providers.venice")

_JSON_HEADERS = {"Content-Type": "application/json"}
_STREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_MODELS_QUERY = {"type": "text"}
_USER_AGENT = "homa-gateway"
_DEPRECATION = "x-venice-model-deprecation-warning"


class VeniceProvider(VeniceImages, HTTPProvider):
    """Adapter for the Venice AI API (kind "venice").

    Implements `ChatProvider`, `ModelListingProvider` and `EmbeddingProvider` (`POST /embeddings`,
    see embeddings.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `api_key` (required), `base_url` (default https://api.venice.ai/api/v1), extra
            `headers` (they override the defaults), pool limits, timeouts and `options` (see
            `options.VeniceOptions`).
        transport: replaces the HTTP transport (tests, benchmarks).

    Raises:
        ValueError: no API key, OpenAI-only settings (`organization`, `project`), or invalid
            `options` (each line names the setting).
    """

    def __init__(
        self, name: str, settings: ProviderSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._name = name
        self._kind = settings.kind
        self._options = parse_options(name, settings.options)
        self._defaults = self._options.venice_parameters.as_body()
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not key:
            raise ValueError(f"providers.{name}.api_key: Venice requires an API key")
        for field in ("organization", "project"):
            if getattr(settings, field):
                raise ValueError(f"providers.{name}.{field}: an OpenAI setting that Venice does not use")
        base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat_url = httpx.URL(f"{base}/chat/completions")
        self._models_url = httpx.URL(f"{base}/models")
        self._embeddings_url = httpx.URL(f"{base}/embeddings")
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", "Authorization": f"Bearer {key}"}
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers, transport=transport)
        self._warned: set[str] = set()

    def _build(self, request: chat_pb2.CompleteRequest, model: str, *, stream: bool) -> VeniceBody:
        return build_venice_body(request, model, stream=stream, defaults=self._defaults)

    def _think_tags(self, built: VeniceBody) -> bool:
        # Venice already removed the blocks when thinking was stripped or disabled.
        fields = built.fields
        stripped = fields.flag("strip_thinking_response") or fields.flag("disable_thinking")
        return self._options.parse_think_tags and not stripped

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for invalid input; mapped upstream
                errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        built = self._build(request, ctx.model, stream=False)
        body = orjson.dumps(built.body)
        response = await post_within_deadline(
            self._client, self._name, self._chat_url, ctx, self._timeouts, content=body, headers=_JSON_HEADERS
        )
        self._check_response(response, ctx.model)
        payload = parse_json(self._name, response.content)
        return parse_venice_completion(self._name, payload, think_tags=self._think_tags(built))

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """Stream one completion. See `ChatProvider.stream_chat` and `VeniceStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `{"error": ...}` event; UPSTREAM_PROTOCOL_ERROR for malformed
                events; UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before `[DONE]`;
                UPSTREAM_TIMEOUT when the deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        built = self._build(request, ctx.model, stream=True)
        body = orjson.dumps(built.body)
        timeout = self._timeouts.for_call(ctx)
        decoder = VeniceStreamDecoder(self._name, ctx.model, think_tags=self._think_tags(built))
        deadline = ctx.deadline
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST", self._chat_url, content=body, headers=_STREAM_HEADERS, timeout=timeout
            ),
            media_type=SSE,
            http_error=lambda response: self._http_error(response, ctx.model),
            parse=aiter_sse,
            truncated=SSETruncated,
            on_open=lambda response: self._note_deprecation(response, ctx.model),
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
        """2048 inputs per call (Venice's limit)."""
        return EMBED_LIMITS

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via `POST /embeddings` (OpenAI format). See `EmbeddingProvider.embed`."""
        body = orjson.dumps(build_venice_embeddings_body(request, ctx.model))
        response = await post_within_deadline(
            self._client,
            self._name,
            self._embeddings_url,
            ctx,
            self._timeouts,
            content=body,
            headers=_JSON_HEADERS,
        )
        self._check_response(response, ctx.model)
        return parse_embeddings(self._name, parse_json(self._name, response.content), len(request.inputs))

    async def list_models(self) -> list[str]:
        """Text model ids from `GET /models?type=text`, in Venice's order.

        Venice returns the whole list in one response (the endpoint has no paging parameters).
        """
        response = await get_response(self._client, self._name, self._models_url, params=_MODELS_QUERY)
        self._check_response(response, "")
        payload = parse_json(self._name, response.content)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise protocol_error(self._name, "the model list has no `data` array")
        return [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]

    def _check_response(self, response: httpx.Response, model: str) -> None:
        if response.status_code >= 300:
            raise self._http_error(response, model)
        self._note_deprecation(response, model)

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name, model, response.status_code, response.headers, response.content
        )

    def _note_deprecation(self, response: httpx.Response, model: str) -> None:
        """Log Venice's model deprecation warning once per model, so operators can migrate."""
        warning = response.headers.get(_DEPRECATION)
        if warning and model and model not in self._warned:
            self._warned.add(model)
            log.warning(
                "venice model is deprecated",
                extra={
                    "provider": self._name,
                    "model": model,
                    "warning": warning,
                    "date": response.headers.get("x-venice-model-deprecation-date", ""),
                    "replacement": response.headers.get("x-venice-deprecated-replacement", ""),
                },
            )
