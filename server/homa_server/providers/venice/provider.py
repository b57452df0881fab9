"""`VeniceProvider`: chat (whole and streamed) and model listing over Venice's HTTP API.

Everything that does not depend on the request is computed once in `__init__`: the validated
options, the pooled client with its default headers (`Authorization: Bearer <key>`, then
`settings.headers`), the endpoint URLs and the timeout policy. Venice has no token-counting
endpoint, so this class does not implement `TokenCountingProvider` (the gateway estimates locally).

Deadlines: unary calls run under `asyncio.timeout(remaining)`; streams bound each httpx phase by the
remaining time, check the deadline after every event, and honour `ctx.first_token_timeout` until the
first event arrives. Cancellation: the streamed response lives inside `async with`, so closing or
cancelling the generator closes the upstream connection at once; `CancelledError` is never
swallowed.

Venice blocks a key for 30 s after more than 20 failed requests in 30 s, so nothing here retries:
retries are the router's decision, made on the mapped error's `retryable` and `retry_after`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import upstream_interrupted
from homa_server.providers._http import TimeoutPolicy, build_client, transport_error, upstream_timeout
from homa_server.providers._sse import SSETruncated, aiter_sse
from homa_server.providers.base import CallContext
from homa_server.providers.openai.error_mapping import protocol_error
from homa_server.providers.venice.chat_request import VeniceBody, build_venice_body
from homa_server.providers.venice.chat_response import parse_venice_completion
from homa_server.providers.venice.chat_stream import DONE, VeniceStreamDecoder
from homa_server.providers.venice.error_mapping import error_from_response
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
# After [DONE] the rest of the body is read so the connection can be reused, but never for longer
# than this: a server that keeps the stream open must not hold us.
_DRAIN_TIMEOUT_S = 0.5


class VeniceProvider:
    """Adapter for the Venice AI API (kind "venice").

    Implements `ChatProvider` and `ModelListingProvider`.

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
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", "Authorization": f"Bearer {key}"}
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers, transport=transport)
        self._warned: set[str] = set()

    @property
    def name(self) -> str:
        """Instance name from settings."""
        return self._name

    @property
    def kind(self) -> str:
        """The configured adapter kind ("venice")."""
        return self._kind

    async def aclose(self) -> None:
        """Close the pooled connections. The provider must not be used afterwards."""
        await self._client.aclose()

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
        self._check_response(response, ctx.model)
        payload = _json(self._name, response.content)
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
                    await self._check_stream_response(response, ctx.model)
                    chunks = response.aiter_bytes()
                    events = aiter_sse(chunks)
                    # Finalise both iterators on exit rather than in the loop's asyncgen GC hook
                    # (httpx annotates aiter_bytes as AsyncIterator; it is an async generator).
                    stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
                    stack.push_async_callback(events.aclose)
                    first = await anext(events, None)
                if first is None:
                    raise upstream_interrupted(self._name, "the body ended before the first event")
                if first.data == DONE:
                    for event in decoder.done():
                        yield event
                    await _drain(events)
                    return
                for event in decoder.feed(first.data):
                    yield event
                async for sse in events:
                    if sse.data == DONE:
                        for event in decoder.done():
                            yield event
                        await _drain(events)
                        return
                    if deadline is not None and time.monotonic() >= deadline:
                        raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                    for event in decoder.feed(sse.data):
                        yield event
                raise upstream_interrupted(self._name, "the connection closed before [DONE]")
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
        """Text model ids from `GET /models?type=text`, in Venice's order.

        Venice returns the whole list in one response (the endpoint has no paging parameters).
        """
        try:
            response = await self._client.get(self._models_url, params=_MODELS_QUERY)
        except httpx.HTTPError as exc:
            raise transport_error(self._name, exc) from None
        self._check_response(response, "")
        payload = _json(self._name, response.content)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise protocol_error(self._name, "the model list has no `data` array")
        return [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]

    def _check_response(self, response: httpx.Response, model: str) -> None:
        if response.status_code >= 300:
            raise error_from_response(
                self._name, model, response.status_code, response.headers, response.content
            )
        self._note_deprecation(response, model)

    async def _check_stream_response(self, response: httpx.Response, model: str) -> None:
        if response.status_code >= 300:
            await response.aread()
            raise error_from_response(
                self._name, model, response.status_code, response.headers, response.content
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise protocol_error(self._name, f"expected text/event-stream, got {content_type or 'no type'}")
        self._note_deprecation(response, model)

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


def _json(provider: str, content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise protocol_error(provider, "the response body is not JSON") from None


def _first_token_timer(first_at: float | None) -> asyncio.Timeout:
    """`asyncio.timeout` until `first_at` (time.monotonic based), or an inert one for None."""
    if first_at is None:
        return asyncio.timeout(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (first_at - time.monotonic()))


async def _drain(events: AsyncIterator[Any]) -> None:
    """Read what follows [DONE] so httpx can return the connection to the pool."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in events:
                pass
    except (TimeoutError, SSETruncated, httpx.HTTPError):
        pass  # the response is closed by the caller's `async with`; reuse is only an optimisation
