"""`CohereProvider`: Cohere v2 chat (whole and streamed) and model listing over HTTP.

Everything that does not depend on the request is computed once in `__init__`: the pooled client
with its default headers (`Authorization: Bearer <key>`, `X-Client-Name` from the options,
`settings.headers` last so they can override), the endpoint URLs, the option body defaults, the
error mapper and the timeout policy.

Not a `TokenCountingProvider`: Cohere's `/v1/tokenize` tokenizes one plain text, not a chat request
with its template, roles and tools, so the gateway's local estimate is as good and costs no call.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

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
from homa_server.providers.cohere.chat_request import build_chat_body
from homa_server.providers.cohere.chat_response import parse_chat_response
from homa_server.providers.cohere.chat_stream import CohereStreamDecoder
from homa_server.providers.cohere.embeddings import LIMITS as EMBED_LIMITS
from homa_server.providers.cohere.embeddings import build_embed_body, parse_embed_response
from homa_server.providers.cohere.error_mapping import CohereErrors
from homa_server.providers.cohere.options import parse_options
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "CohereProvider"]

DEFAULT_BASE_URL = "https://api.cohere.com"

DONE = b"[DONE]"
_JSON_HEADERS = {"Content-Type": "application/json"}
_STREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_USER_AGENT = "homa-gateway"
# A guard against a server that keeps handing out next_page_tokens.
_MAX_MODEL_PAGES = 100


class CohereProvider(HTTPProvider):
    """Adapter for Cohere's v2 Chat API.

    Implements `ChatProvider`, `ModelListingProvider` and `EmbeddingProvider` (`POST /v2/embed`,
    see embeddings.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (default https://api.cohere.com, without `/v2`), `api_key`
            (required), extra `headers`, pool limits, timeouts and `options` (see `options.py`).

    Raises:
        ValueError: at construction, for a missing API key, settings Cohere has no use for
            (`organization`, `project`) or invalid `options` (the message names the option path).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        options = parse_options(settings.options)
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not key:
            raise ValueError("api_key: Cohere needs an API key (or set COHERE_API_KEY / CO_API_KEY)")
        for unused in ("organization", "project"):
            if getattr(settings, unused):
                raise ValueError(f"{unused}: not used by Cohere; remove it")
        self._name = name
        self._kind = settings.kind
        base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat_url = httpx.URL(f"{base}/v2/chat")
        self._models_url = httpx.URL(f"{base}/v1/models")
        self._embed_url = httpx.URL(f"{base}/v2/embed")
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", "Authorization": f"Bearer {key}"}
        if options.client_name:
            headers["X-Client-Name"] = options.client_name
        headers.update(settings.headers)
        self._defaults = options.body_defaults()
        self._page_size = str(options.models_page_size)
        self._errors = CohereErrors(name, key)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for input Cohere cannot take; mapped
                upstream errors (see error_mapping), including finish_reason ERROR / TIMEOUT;
                UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, stream=False, defaults=self._defaults))
        response = await post_within_deadline(
            self._client, self._name, self._chat_url, ctx, self._timeouts, content=body, headers=_JSON_HEADERS
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        return parse_chat_response(parse_json(self._name, response.content), ctx.model, self._errors)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        """Stream one completion. See `ChatProvider.stream_chat` and `CohereStreamDecoder`.

        `message-end` is the stream's terminator; `data: [DONE]` may follow it and is optional.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped error object or finish_reason ERROR / TIMEOUT (after the usage
                event); UPSTREAM_PROTOCOL_ERROR for malformed events; UPSTREAM_STREAM_INTERRUPTED
                when the body ends, breaks or sends [DONE] before message-end; UPSTREAM_TIMEOUT
                when the deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, stream=True, defaults=self._defaults))
        timeout = self._timeouts.for_call(ctx)
        decoder = CohereStreamDecoder(ctx.model, self._errors)
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
        ) as stream:
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            for event in self._decode(decoder, first):
                yield event
            if not decoder.finished:
                async for sse in stream.events:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                    for event in self._decode(decoder, sse):
                        yield event
                    if decoder.finished:
                        break
                else:
                    raise upstream_interrupted(self._name, "the connection closed before message-end")
            if decoder.failure is not None:
                raise decoder.failure
            await stream.drain()

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """96 inputs per call (Cohere's limit)."""
        return EMBED_LIMITS

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via `POST /v2/embed`. See `EmbeddingProvider.embed` and embeddings.py."""
        body = orjson.dumps(build_embed_body(request, ctx.model))
        response = await post_within_deadline(
            self._client,
            self._name,
            self._embed_url,
            ctx,
            self._timeouts,
            content=body,
            headers=_JSON_HEADERS,
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        parsed = parse_embed_response(
            self._name, parse_json(self._name, response.content), len(request.inputs)
        )
        parsed.model = ctx.model
        return parsed

    async def list_models(self) -> list[str]:
        """Names of the chat models from `GET /v1/models?endpoint=chat`, following every page.

        Raises:
            GatewayError: mapped HTTP errors; UPSTREAM_PROTOCOL_ERROR for a malformed page or a
                page token that repeats.
        """
        names: list[str] = []
        seen: set[str] = set()
        params = {"page_size": self._page_size, "endpoint": "chat"}
        for _ in range(_MAX_MODEL_PAGES):
            response = await get_response(self._client, self._name, self._models_url, params=params)
            if response.status_code >= 300:
                raise self._http_error(response, "")
            payload = parse_json(self._name, response.content)
            models = payload.get("models") if isinstance(payload, dict) else None
            if not isinstance(models, list):
                raise self._errors.protocol("the model list has no `models` array")
            names.extend(
                model["name"]
                for model in models
                if isinstance(model, dict) and isinstance(model.get("name"), str)
            )
            token = payload.get("next_page_token")
            if not token or not isinstance(token, str):
                return names
            if token in seen:
                raise self._errors.protocol("the model list repeats a page token")
            seen.add(token)
            params = {**params, "page_token": token}
        raise self._errors.protocol(f"the model list has more than {_MAX_MODEL_PAGES} pages")

    def _decode(self, decoder: CohereStreamDecoder, sse: SSEEvent) -> list[chat_pb2.StreamCompleteResponse]:
        if sse.data == DONE:
            raise upstream_interrupted(self._name, "[DONE] arrived before message-end")
        return decoder.feed(sse.data)

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return self._errors.from_response(model, response.status_code, response.headers, response.content)
