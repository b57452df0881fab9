"""`CohereProvider`: Cohere v2 chat (whole and streamed) and model listing over HTTP.

Everything that does not depend on the request is computed once in `__init__`: the pooled client
with its default headers (`Authorization: Bearer <key>`, `X-Client-Name` from the options,
`settings.headers` last so they can override), the endpoint URLs, the option body defaults, the
error mapper and the timeout policy.

Not a `TokenCountingProvider`: Cohere's `/v1/tokenize` tokenizes one plain text, not a chat request
with its template, roles and tools, so the gateway's local estimate is as good and costs no call.

Deadlines: unary calls run under `asyncio.timeout(remaining)`; streams bound each httpx phase by
the remaining time, check the deadline after every event, and honour `ctx.first_token_timeout`
until the first event arrives. Cancellation: the streamed response lives inside `async with`, so
closing or cancelling the generator closes the upstream connection at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import upstream_interrupted
from homa_server.providers._http import TimeoutPolicy, build_client, transport_error, upstream_timeout
from homa_server.providers._sse import SSEEvent, SSETruncated, aiter_sse
from homa_server.providers.base import CallContext
from homa_server.providers.cohere.chat_request import build_chat_body
from homa_server.providers.cohere.chat_response import parse_chat_response
from homa_server.providers.cohere.chat_stream import CohereStreamDecoder
from homa_server.providers.cohere.error_mapping import CohereErrors
from homa_server.providers.cohere.options import parse_options
from homa_server.settings import ProviderSettings

__all__ = ["DEFAULT_BASE_URL", "CohereProvider"]

DEFAULT_BASE_URL = "https://api.cohere.com"

DONE = b"[DONE]"
_JSON_HEADERS = {"Content-Type": "application/json"}
_STREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_USER_AGENT = "homa-gateway"
# After message-end the rest of the body (an optional `data: [DONE]` and the chunked terminator) is
# read so the connection can be reused, but never for longer than this.
_DRAIN_TIMEOUT_S = 0.5
# A guard against a server that keeps handing out next_page_tokens.
_MAX_MODEL_PAGES = 100


class CohereProvider:
    """Adapter for Cohere's v2 Chat API.

    Implements `ChatProvider` and `ModelListingProvider`.

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
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", "Authorization": f"Bearer {key}"}
        if options.client_name:
            headers["X-Client-Name"] = options.client_name
        headers.update(settings.headers)
        self._defaults = options.body_defaults()
        self._page_size = str(options.models_page_size)
        self._errors = CohereErrors(name, key)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)

    @property
    def name(self) -> str:
        """Instance name from settings."""
        return self._name

    @property
    def kind(self) -> str:
        """The configured adapter kind ("cohere")."""
        return self._kind

    async def aclose(self) -> None:
        """Close the pooled connections. The provider must not be used afterwards."""
        await self._client.aclose()

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
        timeout = self._timeouts.for_call(ctx)
        try:
            async with asyncio.timeout(ctx.remaining()):
                response = await self._client.post(
                    self._chat_url, content=body, headers=_JSON_HEADERS, timeout=timeout
                )
        except TimeoutError:
            raise upstream_timeout(self._name, "the call deadline passed") from None
        except httpx.HTTPError as exc:
            raise transport_error(self._name, exc) from None
        if response.status_code >= 300:
            raise self._errors.from_response(
                ctx.model, response.status_code, response.headers, response.content
            )
        return parse_chat_response(self._json(response.content), ctx.model, self._errors)

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
        first_at = None if ctx.first_token_timeout is None else time.monotonic() + ctx.first_token_timeout
        started = False  # response headers received: later transport failures are interruptions
        try:
            async with AsyncExitStack() as stack:
                async with _first_token_timer(first_at):
                    response = await stack.enter_async_context(
                        self._client.stream(
                            "POST", self._chat_url, content=body, headers=_STREAM_HEADERS, timeout=timeout
                        )
                    )
                    started = True
                    await self._check_stream_response(response, ctx)
                    chunks = response.aiter_bytes()
                    events = aiter_sse(chunks)
                    # Finalise both iterators on exit rather than in the loop's asyncgen GC hook
                    # (httpx annotates aiter_bytes as AsyncIterator; it is an async generator).
                    stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
                    stack.push_async_callback(events.aclose)
                    first = await anext(events, None)
                if first is None:
                    raise upstream_interrupted(self._name, "the body ended before the first event")
                for event in self._decode(decoder, first):
                    yield event
                if not decoder.finished:
                    async for sse in events:
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
                await _drain(events)
        except SSETruncated:
            raise upstream_interrupted(
                self._name, "the connection closed in the middle of an event"
            ) from None
        except TimeoutError:
            # Only _first_token_timer raises the builtin TimeoutError here (httpx has its own).
            raise upstream_timeout(self._name, "no first event within the first-token timeout") from None
        except httpx.TimeoutException as exc:
            raise transport_error(self._name, exc) from None
        except httpx.HTTPError as exc:
            if started:
                raise upstream_interrupted(self._name, f"the stream broke ({type(exc).__name__})") from None
            raise transport_error(self._name, exc) from None

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
            try:
                response = await self._client.get(self._models_url, params=params)
            except httpx.HTTPError as exc:
                raise transport_error(self._name, exc) from None
            if response.status_code >= 300:
                raise self._errors.from_response("", response.status_code, response.headers, response.content)
            payload = self._json(response.content)
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

    async def _check_stream_response(self, response: httpx.Response, ctx: CallContext) -> None:
        if response.status_code >= 300:
            await response.aread()
            raise self._errors.from_response(
                ctx.model, response.status_code, response.headers, response.content
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise self._errors.protocol(f"expected text/event-stream, got {content_type or 'no type'}")

    def _json(self, content: bytes) -> Any:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise self._errors.protocol("the response body is not JSON") from None


def _first_token_timer(first_at: float | None) -> asyncio.Timeout:
    """`asyncio.timeout` until `first_at` (time.monotonic based), or an inert one for None."""
    if first_at is None:
        return asyncio.timeout(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (first_at - time.monotonic()))


async def _drain(events: AsyncIterator[Any]) -> None:
    """Read what follows message-end so httpx can return the connection to the pool."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in events:
                pass
    except (TimeoutError, SSETruncated, httpx.HTTPError):
        pass  # the response is closed by the caller's `async with`; reuse is only an optimisation
