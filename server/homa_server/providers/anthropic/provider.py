"""`AnthropicProvider`: chat (whole and streamed), token counting and model listing over HTTP.

Everything that does not depend on the request is computed once in `__init__`: the validated
options, the pooled client with its default headers (`x-api-key`, `anthropic-version`,
`anthropic-beta`, then `settings.headers`), the endpoint URLs and the timeout policy.

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
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
from homa_server.providers.anthropic.error_mapping import error_from_response, protocol_error
from homa_server.providers.anthropic.messages_request import build_count_tokens_body, build_messages_body
from homa_server.providers.anthropic.messages_response import parse_message
from homa_server.providers.anthropic.messages_stream import MessageStreamDecoder
from homa_server.providers.anthropic.options import AnthropicOptions, parse_options
from homa_server.providers.base import CallContext
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

_JSON_HEADERS = {"Content-Type": "application/json"}
_USER_AGENT = "homa-gateway"
_PAGE_SIZE = "1000"  # the largest page /v1/models serves
_MAX_PAGES = 100  # a server that keeps saying has_more must not hold us forever


class AnthropicProvider(HTTPProvider):
    """Adapter for Anthropic's Messages API.

    Implements `ChatProvider`, `TokenCountingProvider` and `ModelListingProvider`.

    Args:
        name: instance name from settings (used in errors, metadata and option paths).
        settings: `base_url` (default https://api.anthropic.com), `api_key` (required), extra
            `headers` (they override the defaults), pool limits, timeouts and `options` (see
            `options.AnthropicOptions`).

    Raises:
        ValueError: invalid options (naming `providers.<name>.options.<key>`), no API key, or
            OpenAI-only settings (organization, project).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        self._options: AnthropicOptions = parse_options(name, settings.options)
        if settings.api_key is None or not settings.api_key.get_secret_value():
            raise ValueError(f"providers.{name}.api_key: Anthropic requires an API key")
        for field in ("organization", "project"):
            if getattr(settings, field):
                raise ValueError(f"providers.{name}.{field}: not used by the Anthropic API; remove it")
        base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._messages_url = httpx.URL(f"{base}/v1/messages")
        self._count_url = httpx.URL(f"{base}/v1/messages/count_tokens")
        self._models_url = httpx.URL(f"{base}/v1/models")
        headers = {
            "User-Agent": _USER_AGENT,
            "Accept": "application/json",
            "x-api-key": settings.api_key.get_secret_value(),
            "anthropic-version": self._options.version,
        }
        if self._options.beta:
            headers["anthropic-beta"] = ",".join(self._options.beta)
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    @property
    def options(self) -> AnthropicOptions:
        """The validated vendor options."""
        return self._options

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One Message. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for invalid input; mapped upstream
                errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(build_messages_body(request, ctx.model, self._options, stream=False))
        payload = await self._post_json(self._messages_url, body, ctx)
        return parse_message(self._name, payload)

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """Stream one Message. See `ChatProvider.stream_chat` and `MessageStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; a mapped `error` event; UPSTREAM_PROTOCOL_ERROR for malformed events;
                UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before `message_stop`;
                UPSTREAM_TIMEOUT when the deadline or the first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(build_messages_body(request, ctx.model, self._options, stream=True))
        timeout = self._timeouts.for_call(ctx)
        decoder = MessageStreamDecoder(self._name, ctx.model)
        deadline = ctx.deadline
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST", self._messages_url, content=body, headers=_JSON_HEADERS, timeout=timeout
            ),
            media_type=SSE,
            http_error=lambda response: self._http_error(response, ctx.model),
            parse=aiter_sse,
            truncated=SSETruncated,
        ) as stream:
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            for event in decoder.feed(first.data):
                yield event
            if decoder.done:
                await stream.drain()
                return
            async for sse in stream.events:
                if deadline is not None and time.monotonic() >= deadline:
                    raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                for event in decoder.feed(sse.data):
                    yield event
                if decoder.done:
                    await stream.drain()
                    return
            raise upstream_interrupted(self._name, "the connection closed before message_stop")

    async def count_tokens(
        self, request: chat_pb2.CountTokensRequest, ctx: CallContext
    ) -> chat_pb2.CountTokensResponse:
        """Exact input tokens via `POST /v1/messages/count_tokens` (system, messages and tools)."""
        body = orjson.dumps(build_count_tokens_body(request, ctx.model, self._options))
        payload = await self._post_json(self._count_url, body, ctx)
        tokens = payload.get("input_tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise protocol_error(self._name, "the token count response has no integer input_tokens")
        return chat_pb2.CountTokensResponse(input_tokens=tokens, exact=True, method="provider")

    async def list_models(self) -> list[str]:
        """Model ids from `GET /v1/models`, every page (newest first, as Anthropic lists them).

        Pages are followed with `after_id` = the previous page's `last_id` while `has_more`.
        """
        models: list[str] = []
        params = {"limit": _PAGE_SIZE}
        for _ in range(_MAX_PAGES):
            response = await get_response(self._client, self._name, self._models_url, params=params)
            if response.status_code >= 300:
                raise self._http_error(response, "")
            payload = parse_json(self._name, response.content)
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, list):
                raise protocol_error(self._name, "the model list has no `data` array")
            models.extend(
                item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
            )
            last_id = payload.get("last_id")
            if payload.get("has_more") is not True or not isinstance(last_id, str) or not last_id:
                break
            params = {"limit": _PAGE_SIZE, "after_id": last_id}
        return models

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
