"""`OllamaProvider`: chat (whole and streamed) over Ollama's native `/api/chat`, and model listing.

Serves a local or self-hosted Ollama (default http://localhost:11434, no authentication) and
Ollama Cloud (`base_url: https://ollama.com` with `api_key`, sent as `Authorization: Bearer`).
Everything that does not depend on the request is computed once in `__init__`: the validated
options, the pooled client with its default headers, the endpoint URLs, the request defaults and
the error mapper.

Ollama has no token-counting endpoint, so this adapter does not implement `TokenCountingProvider`;
the gateway falls back to its local estimate.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every line). Closing
or cancelling a stream's generator closes the upstream connection at once (Ollama then stops
generating).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

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
from homa_server.providers._ndjson import NDJSONLineTooLong, NDJSONTruncated, aiter_ndjson
from homa_server.providers._streaming import open_stream
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.ollama.chat_request import RequestDefaults, build_chat_body
from homa_server.providers.ollama.chat_response import parse_chat_response
from homa_server.providers.ollama.chat_stream import ChatStreamDecoder
from homa_server.providers.ollama.embeddings import LIMITS as EMBED_LIMITS
from homa_server.providers.ollama.embeddings import build_embed_body, parse_embed_response
from homa_server.providers.ollama.error_mapping import ErrorMapper
from homa_server.providers.ollama.options import parse_options
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "NDJSON", "OllamaProvider"]

DEFAULT_BASE_URL = "http://localhost:11434"
NDJSON = "application/x-ndjson"

_USER_AGENT = "homa-gateway"
_JSON_HEADERS = {"Content-Type": "application/json"}


class OllamaProvider(HTTPProvider):
    """Adapter for the Ollama API (local servers and Ollama Cloud).

    Implements `ChatProvider`, `ModelListingProvider` and `EmbeddingProvider` (`POST /api/embed`,
    see embeddings.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (default http://localhost:11434; the server root, without `/api`),
            `api_key` (optional; Ollama Cloud), extra `headers` (they override the defaults), pool
            limits, timeouts and `options` (see `options.OllamaOptions`).

    Raises:
        ValueError: invalid `options`, one line per problem naming the option path.
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        options = parse_options(name, settings.options)
        base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat_url = httpx.URL(f"{base}/api/chat")
        self._tags_url = httpx.URL(f"{base}/api/tags")
        self._embed_url = httpx.URL(f"{base}/api/embed")
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(settings.headers)
        self._defaults = RequestDefaults(options.keep_alive, options.model_options.as_wire())
        self._errors = ErrorMapper(name, options.rate_limit_retry_after_s, key)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion (`stream: false`). See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for input Ollama cannot take; mapped
                upstream errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, self._defaults, stream=False))
        response = await post_within_deadline(
            self._client,
            self._name,
            self._chat_url,
            ctx,
            self._timeouts,
            content=body,
            headers=_request_headers(ctx),
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        payload = parse_json(self._name, response.content)
        if isinstance(payload, dict) and payload.get("error") is not None:
            raise self._errors.from_line(ctx.model, payload["error"])  # an error despite 200
        return parse_chat_response(self._name, payload)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """Stream one completion (NDJSON). See `ChatProvider.stream_chat` and `ChatStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `{"error": ...}` line; UPSTREAM_PROTOCOL_ERROR for malformed
                lines; UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before the
                `done: true` line; UPSTREAM_TIMEOUT when the deadline or the first-token timeout
                passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, self._defaults, stream=True))
        timeout = self._timeouts.for_call(ctx)
        decoder = ChatStreamDecoder(self._errors, ctx.model)
        deadline = ctx.deadline
        try:
            async with open_stream(
                self._name,
                ctx,
                self._client.stream(
                    "POST", self._chat_url, content=body, headers=_request_headers(ctx), timeout=timeout
                ),
                media_type=NDJSON,
                http_error=lambda response: self._http_error(response, ctx.model),
                parse=aiter_ndjson,
                truncated=NDJSONTruncated,
                truncated_detail="the connection closed in the middle of a line",
                first_detail="no first line within the first-token timeout",
                drain_ignores=(NDJSONLineTooLong,),
            ) as stream:
                line = stream.first
                while line is not None:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                    for event in decoder.feed(line):
                        yield event
                    if decoder.finished:
                        await stream.drain()
                        return
                    line = await anext(stream.events, None)
                raise upstream_interrupted(self._name, "the connection closed before the done:true line")
        except NDJSONLineTooLong:
            raise self._errors.protocol_error("a stream line exceeded the size limit") from None

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """256 inputs per request, 2 requests at once (see embeddings.py)."""
        return EMBED_LIMITS

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via `POST /api/embed`. See `EmbeddingProvider.embed` and embeddings.py."""
        body = orjson.dumps(build_embed_body(request, ctx.model, self._defaults.keep_alive))
        response = await post_within_deadline(
            self._client,
            self._name,
            self._embed_url,
            ctx,
            self._timeouts,
            content=body,
            headers=_request_headers(ctx),
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        payload = parse_json(self._name, response.content)
        if isinstance(payload, dict) and payload.get("error") is not None:
            raise self._errors.from_line(ctx.model, payload["error"])
        return parse_embed_response(self._name, payload, len(request.inputs))

    async def list_models(self) -> list[str]:
        """Model names from `GET /api/tags` (every local model; Ollama does not page this list)."""
        response = await get_response(self._client, self._name, self._tags_url)
        if response.status_code >= 300:
            raise self._http_error(response, "")
        payload = parse_json(self._name, response.content)
        models = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(models, list):
            raise self._errors.protocol_error("the model list has no `models` array")
        names: list[str] = []
        for item in models:
            if isinstance(item, dict):
                name = item.get("name") or item.get("model")
                if isinstance(name, str) and name:
                    names.append(name)
        return names

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return self._errors.from_response(model, response.status_code, response.headers, response.content)


def _request_headers(ctx: CallContext) -> dict[str, str]:
    if ctx.request_id:
        # Ollama ignores it, but proxies and load balancers in front of it log X-Request-Id,
        # which lets an operator find a call by the gateway's id.
        return {**_JSON_HEADERS, "X-Request-Id": ctx.request_id}
    return _JSON_HEADERS
