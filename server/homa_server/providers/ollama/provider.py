"""`OllamaProvider`: chat (whole and streamed) over Ollama's native `/api/chat`, and model listing.

Serves a local or self-hosted Ollama (default http://localhost:11434, no authentication) and
Ollama Cloud (`base_url: https://ollama.com` with `api_key`, sent as `Authorization: Bearer`).
Everything that does not depend on the request is computed once in `__init__`: the validated
options, the pooled client with its default headers, the endpoint URLs, the request defaults and
the error mapper.

Ollama has no token-counting endpoint, so this adapter does not implement `TokenCountingProvider`;
the gateway falls back to its local estimate.

Deadlines: unary calls run under `asyncio.timeout(remaining)`; streams bound each httpx phase by
the remaining time, check the deadline after every line, and honour `ctx.first_token_timeout`
until the first line arrives. Cancellation: the streamed response lives inside `async with`, so
closing or cancelling the generator closes the upstream connection at once (Ollama then stops
generating).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import upstream_interrupted
from homa_server.providers._http import TimeoutPolicy, build_client, transport_error, upstream_timeout
from homa_server.providers._ndjson import NDJSONLineTooLong, NDJSONTruncated, aiter_ndjson
from homa_server.providers.base import CallContext
from homa_server.providers.ollama.chat_request import RequestDefaults, build_chat_body
from homa_server.providers.ollama.chat_response import parse_chat_response
from homa_server.providers.ollama.chat_stream import ChatStreamDecoder
from homa_server.providers.ollama.error_mapping import ErrorMapper
from homa_server.providers.ollama.options import parse_options
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "NDJSON", "OllamaProvider"]

DEFAULT_BASE_URL = "http://localhost:11434"
NDJSON = "application/x-ndjson"

_USER_AGENT = "homa-gateway"
_JSON_HEADERS = {"Content-Type": "application/json"}
# After the done:true line the rest of the body (the chunked terminator) is read so the connection
# can be reused, but never for longer than this: a server that keeps the stream open must not hold us.
_DRAIN_TIMEOUT_S = 0.5


class OllamaProvider:
    """Adapter for the Ollama API (local servers and Ollama Cloud).

    Implements `ChatProvider` and `ModelListingProvider`.

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
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(settings.headers)
        self._defaults = RequestDefaults(options.keep_alive, options.model_options.as_wire())
        self._errors = ErrorMapper(name, options.rate_limit_retry_after_s, key)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    @property
    def name(self) -> str:
        """Instance name from settings."""
        return self._name

    @property
    def kind(self) -> str:
        """The configured adapter kind ("ollama")."""
        return self._kind

    async def aclose(self) -> None:
        """Close the pooled connections. The provider must not be used afterwards."""
        await self._client.aclose()

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One chat completion (`stream: false`). See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for input Ollama cannot take; mapped
                upstream errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the deadline.
        """
        body = orjson.dumps(build_chat_body(request, ctx.model, self._defaults, stream=False))
        timeout = self._timeouts.for_call(ctx)
        try:
            async with asyncio.timeout(ctx.remaining()):
                response = await self._client.post(
                    self._chat_url, content=body, headers=_request_headers(ctx), timeout=timeout
                )
        except TimeoutError:
            raise upstream_timeout(self._name, "the call deadline passed") from None
        except httpx.HTTPError as exc:
            raise transport_error(self._name, exc) from None
        if response.status_code >= 300:
            raise self._errors.from_response(
                ctx.model, response.status_code, response.headers, response.content
            )
        payload = self._json(response.content)
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
        first_at = None if ctx.first_token_timeout is None else time.monotonic() + ctx.first_token_timeout
        started = False  # response headers received: later transport failures are interruptions
        try:
            async with AsyncExitStack() as stack:
                async with _first_token_timer(first_at):
                    response = await stack.enter_async_context(
                        self._client.stream(
                            "POST",
                            self._chat_url,
                            content=body,
                            headers=_request_headers(ctx),
                            timeout=timeout,
                        )
                    )
                    started = True
                    await self._check_stream_response(response, ctx)
                    chunks = response.aiter_bytes()
                    lines = aiter_ndjson(chunks)
                    # Finalise both iterators on exit rather than in the loop's asyncgen GC hook
                    # (httpx annotates aiter_bytes as AsyncIterator; it is an async generator).
                    stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
                    stack.push_async_callback(lines.aclose)
                    line = await anext(lines, None)
                while line is not None:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                    for event in decoder.feed(line):
                        yield event
                    if decoder.finished:
                        await _drain(lines)
                        return
                    line = await anext(lines, None)
                raise upstream_interrupted(self._name, "the connection closed before the done:true line")
        except NDJSONTruncated:
            raise upstream_interrupted(self._name, "the connection closed in the middle of a line") from None
        except NDJSONLineTooLong:
            raise self._errors.protocol_error("a stream line exceeded the size limit") from None
        except TimeoutError:
            # Only _first_token_timer raises the builtin TimeoutError here (httpx has its own).
            raise upstream_timeout(self._name, "no first line within the first-token timeout") from None
        except httpx.TimeoutException as exc:
            raise transport_error(self._name, exc) from None
        except httpx.HTTPError as exc:
            if started:
                raise upstream_interrupted(self._name, f"the stream broke ({type(exc).__name__})") from None
            raise transport_error(self._name, exc) from None

    async def list_models(self) -> list[str]:
        """Model names from `GET /api/tags` (every local model; Ollama does not page this list)."""
        try:
            response = await self._client.get(self._tags_url)
        except httpx.HTTPError as exc:
            raise transport_error(self._name, exc) from None
        if response.status_code >= 300:
            raise self._errors.from_response("", response.status_code, response.headers, response.content)
        payload = self._json(response.content)
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

    def _json(self, content: bytes) -> Any:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise self._errors.protocol_error("the response body is not JSON") from None

    async def _check_stream_response(self, response: httpx.Response, ctx: CallContext) -> None:
        if response.status_code >= 300:
            await response.aread()
            raise self._errors.from_response(
                ctx.model, response.status_code, response.headers, response.content
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(NDJSON):
            raise self._errors.protocol_error(f"expected {NDJSON}, got {content_type or 'no type'}")


def _request_headers(ctx: CallContext) -> dict[str, str]:
    if ctx.request_id:
        # Ollama ignores it, but proxies and load balancers in front of it log X-Request-Id,
        # which lets an operator find a call by the gateway's id.
        return {**_JSON_HEADERS, "X-Request-Id": ctx.request_id}
    return _JSON_HEADERS


def _first_token_timer(first_at: float | None) -> asyncio.Timeout:
    """`asyncio.timeout` until `first_at` (time.monotonic based), or an inert one for None."""
    if first_at is None:
        return asyncio.timeout(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (first_at - time.monotonic()))


async def _drain(lines: AsyncIterator[bytes]) -> None:
    """Read what follows the final line so httpx can return the connection to the pool."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in lines:
                pass
    except (TimeoutError, NDJSONTruncated, NDJSONLineTooLong, httpx.HTTPError):
        pass  # the response is closed by the caller's `async with`; reuse is only an optimisation
