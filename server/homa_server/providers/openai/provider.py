"""`OpenAIProvider`: chat (whole and streamed), token counting and model listing over HTTP.

Serves api.openai.com and any OpenAI-compatible server (`base_url`; the API key is optional there,
and without one no Authorization header is sent). Everything that does not depend on the request
is computed once in `__init__`: the pooled client with its default headers (auth, organization,
project, `settings.headers`), the endpoint URLs and the timeout policy.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
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
from homa_server.providers._sse import SSETruncated, aiter_sse
from homa_server.providers._streaming import SSE, open_stream
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.openai.audio import OpenAIProviderAudio
from homa_server.providers.openai.chat_request import build_chat_body
from homa_server.providers.openai.chat_response import parse_completion
from homa_server.providers.openai.chat_stream import DONE, ChatStreamDecoder
from homa_server.providers.openai.embeddings import build_embeddings_body, embedding_limits, parse_embeddings
from homa_server.providers.openai.error_mapping import error_from_response, protocol_error
from homa_server.providers.openai.image_calls import OpenAIImages
from homa_server.providers.openai.responses_input import build_input_tokens_body
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_JSON_HEADERS = {"Content-Type": "application/json"}
_USER_AGENT = "homa-gateway"


class OpenAIProvider(OpenAIProviderAudio, OpenAIImages, HTTPProvider):
    """Adapter for the OpenAI API and OpenAI-compatible servers.

    Implements `ChatProvider`, `TokenCountingProvider`, `ModelListingProvider` and
    `EmbeddingProvider` (`POST /embeddings`, see embeddings.py), `TranscriptionProvider` and
    `SpeechProvider` (`/audio/*`, see audio.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (default https://api.openai.com/v1), `api_key` (optional),
            `organization`, `project`, extra `headers` (they override the defaults), pool limits
            and timeouts; `options.embedding_batch_size` / `options.embedding_concurrency` cap
            inputs per embeddings request (default 2048) and requests in flight per call (4).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat_url = httpx.URL(f"{base}/chat/completions")
        self._input_tokens_url = httpx.URL(f"{base}/responses/input_tokens")
        self._models_url = httpx.URL(f"{base}/models")
        self._embeddings_url = httpx.URL(f"{base}/embeddings")
        self._audio_base = base
        self._images_base = base
        self._embed_base64 = settings.kind == "openai"
        self._embedding_limits = embedding_limits(settings.options)
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if settings.api_key is not None and settings.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        if settings.organization:
            headers["OpenAI-Organization"] = settings.organization
        if settings.project:
            headers["OpenAI-Project"] = settings.project
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for invalid input; mapped upstream
                errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, stream=False))
        payload = await self._post_json(self._chat_url, body, ctx)
        return parse_completion(self._name, payload)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        """Stream one completion. See `ChatProvider.stream_chat` and `ChatStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `{"error": ...}` event; UPSTREAM_PROTOCOL_ERROR for malformed
                events; UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before `[DONE]`;
                UPSTREAM_TIMEOUT when the deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, stream=True))
        timeout = self._timeouts.for_call(ctx)
        decoder = ChatStreamDecoder(self._name, ctx.model)
        deadline = ctx.deadline
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST", self._chat_url, content=body, headers=_request_headers(ctx), timeout=timeout
            ),
            media_type=SSE,
            http_error=lambda response: self._http_error(response, ctx.model),
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

    async def count_tokens(
        self, request: chat_pb2.CountTokensRequest, ctx: CallContext
    ) -> chat_pb2.CountTokensResponse:
        """Exact input tokens via `POST /responses/input_tokens` (Responses API input format).

        OpenAI-compatible servers usually lack this endpoint and answer 404 -> UPSTREAM_NOT_FOUND.
        """
        body = orjson.dumps(build_input_tokens_body(request, ctx.model))
        payload = await self._post_json(self._input_tokens_url, body, ctx)
        tokens = payload.get("input_tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, int):
            raise protocol_error(self._name, "the token count response has no integer input_tokens")
        return chat_pb2.CountTokensResponse(input_tokens=tokens, exact=True, method="provider")

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """At most 2048 inputs per request (OpenAI's limit), or `options.embedding_batch_size`."""
        return self._embedding_limits

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via `POST /embeddings`. See `EmbeddingProvider.embed` and embeddings.py."""
        body = orjson.dumps(build_embeddings_body(request, ctx.model, base64=self._embed_base64))
        payload = await self._post_json(self._embeddings_url, body, ctx)
        return parse_embeddings(self._name, payload, len(request.inputs))

    async def list_models(self) -> list[str]:
        """Model ids from `GET /models`, in the order the provider lists them."""
        response = await get_response(self._client, self._name, self._models_url)
        if response.status_code >= 300:
            raise self._http_error(response, "")
        payload = parse_json(self._name, response.content)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise protocol_error(self._name, "the model list has no `data` array")
        return [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]

    async def _post_json(self, url: httpx.URL, body: bytes, ctx: CallContext) -> Any:
        """POST `body`, return the parsed JSON of a 2xx answer, map everything else."""
        response = await post_within_deadline(
            self._client, self._name, url, ctx, self._timeouts, content=body, headers=_request_headers(ctx)
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        return parse_json(self._name, response.content)

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name, model, response.status_code, response.headers, response.content
        )


def _request_headers(ctx: CallContext) -> dict[str, str]:
    if ctx.request_id:
        # OpenAI records X-Client-Request-Id with the request, which lets support find a call by
        # the gateway's id.
        return {**_JSON_HEADERS, "X-Client-Request-Id": ctx.request_id}
    return _JSON_HEADERS
