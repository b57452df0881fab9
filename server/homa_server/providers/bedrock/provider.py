"""`BedrockProvider`: Converse (whole), ConverseStream, CountTokens and model listing over HTTP.

Everything that does not depend on the request is computed once in `__init__`: the options
(region, credentials, control-plane URL), the signer or the bearer header, the pooled client with
its default headers, and the timeout policy. Per-model URLs are cached: the model id goes into one
path segment, with the '/' of ARNs percent-encoded (see `_model_urls` for ':').

Deadlines and cancellation: see `_http.post_within_deadline` (unary calls) and
`_streaming.open_stream` (streams, which also check the deadline after every event). Closing
or cancelling a stream's generator closes the upstream connection at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import GatewayError, invalid_field, upstream_interrupted
from homa_server.providers._http import (
    HTTPProvider,
    TimeoutPolicy,
    build_client,
    get_response,
    parse_json,
    post_within_deadline,
    upstream_timeout,
)
from homa_server.providers._streaming import open_stream
from homa_server.providers.base import CallContext, EmbeddingLimits
from homa_server.providers.bedrock.auth import SigV4Auth, resolve_credentials
from homa_server.providers.bedrock.chat_request import build_converse_body, build_count_tokens_body
from homa_server.providers.bedrock.chat_response import parse_converse
from homa_server.providers.bedrock.chat_stream import ConverseStreamDecoder
from homa_server.providers.bedrock.embeddings import build_invoke_body, limits_for, parse_invoke_response
from homa_server.providers.bedrock.error_mapping import error_from_response, protocol_error
from homa_server.providers.bedrock.eventstream import Frame, FrameReader
from homa_server.providers.bedrock.images import BedrockImages
from homa_server.providers.bedrock.options import resolve_options
from homa_server.settings import ProviderSettings

__all__ = ["BedrockProvider"]

_JSON_HEADERS = {"Content-Type": "application/json"}
_EVENTSTREAM = "application/vnd.amazon.eventstream"
_USER_AGENT = "homa-gateway"
_REQUEST_ID = "x-amzn-requestid"
_URL_CACHE_SIZE = 1024
_MAX_PROFILE_PAGES = 100  # a guard against a control plane that keeps returning a nextToken
# Every character the service model's model-id patterns allow (ids, inference profiles, ARNs).
_MODEL_ID = re.compile(r"[A-Za-z0-9._:/-]{1,2048}")


@dataclass(frozen=True, slots=True)
class _ModelUrls:
    converse: httpx.URL
    stream: httpx.URL
    count_tokens: httpx.URL
    invoke: httpx.URL


class BedrockProvider(BedrockImages, HTTPProvider):
    """Adapter for Amazon Bedrock Runtime's Converse API.

    Implements `ChatProvider`, `TokenCountingProvider`, `ModelListingProvider` and
    `EmbeddingProvider` (InvokeModel with Titan and Cohere embedding bodies, see embeddings.py).

    Args:
        name: instance name from settings (used in errors and metadata).
        settings: `base_url` (default `https://bedrock-runtime.<region>.amazonaws.com`), `api_key`
            (a Bedrock API key, sent as a bearer token instead of SigV4), extra `headers`, pool
            limits, timeouts, and `options` (see `options.py`: region, static keys,
            control_base_url, list_inference_profiles, throttling_retry_after_s).

    Raises:
        ValueError: invalid options, or no credentials at all (at start-up, naming the setting).
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._kind = settings.kind
        options = resolve_options(name, settings.options)
        self._runtime_url = (
            settings.base_url or f"https://bedrock-runtime.{options.region}.amazonaws.com"
        ).rstrip("/")
        control = options.control_base_url
        self._models_url = httpx.URL(f"{control}/foundation-models", params={"byOutputModality": "TEXT"})
        self._profiles_url = httpx.URL(f"{control}/inference-profiles")
        self._list_profiles = options.list_inference_profiles
        self._throttle_delay = options.throttling_retry_after_s
        headers = {"User-Agent": _USER_AGENT}
        api_key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if api_key:
            if options.static_keys is not None:
                raise ValueError(
                    f"providers.{name}.api_key: a Bedrock API key and options.access_key_id are "
                    "mutually exclusive; configure one"
                )
            headers["Authorization"] = f"Bearer {api_key}"
            # httpx's base Auth passes requests through unchanged: the bearer is a default header.
            self._auth: httpx.Auth = httpx.Auth()
        else:
            self._auth = SigV4Auth(resolve_credentials(name, options.static_keys), options.region)
        headers.update(settings.headers)
        self._timeouts = TimeoutPolicy(settings)
        self._client = build_client(settings, headers=headers)
        self._urls: dict[str, _ModelUrls] = {}

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        """One Converse call. See `ChatProvider.complete_chat`.

        Raises:
            GatewayError: INVALID_ARGUMENT before any HTTP call for input Bedrock cannot take;
                mapped upstream errors otherwise (see error_mapping); UPSTREAM_TIMEOUT past the
                deadline.
        """
        body = orjson.dumps(build_converse_body(request))
        response = await self._post(self._model_urls(ctx.model).converse, body, ctx)
        payload = parse_json(self._name, response.content)
        return parse_converse(self._name, payload, response.headers.get(_REQUEST_ID, ""))

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """One ConverseStream call. See `ChatProvider.stream_chat` and `ConverseStreamDecoder`.

        Raises:
            GatewayError: INVALID_ARGUMENT (on first iteration, before any HTTP call); mapped HTTP
                errors; mapped exception frames; UPSTREAM_PROTOCOL_ERROR for corrupt frames or
                payloads; UPSTREAM_STREAM_INTERRUPTED when the body ends or breaks before both
                `messageStop` and `metadata`; UPSTREAM_TIMEOUT when the deadline or the
                first-token timeout passes.

        Cancellation: closing the generator (or cancelling the task iterating it) closes the
        upstream response immediately; `CancelledError` is never swallowed.
        """
        body = orjson.dumps(build_converse_body(request))
        url = self._model_urls(ctx.model).stream
        timeout = self._timeouts.for_call(ctx)
        deadline = ctx.deadline
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST", url, content=body, headers=_JSON_HEADERS, timeout=timeout, auth=self._auth
            ),
            media_type=_EVENTSTREAM,
            http_error=lambda response: self._http_error(response, ctx.model),
            parse=lambda chunks: _frames(chunks, FrameReader(self._name)),
            truncated=_TruncatedError,
            truncated_detail="the connection closed in the middle of an event-stream message",
            # The answer is already complete when draining; a corrupt trailing frame is ignored.
            drain_ignores=(GatewayError,),
        ) as stream:
            decoder = ConverseStreamDecoder(
                self._name, ctx.model, stream.response.headers.get(_REQUEST_ID, ""), self._throttle_delay
            )
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            for event in decoder.feed(first):
                yield event
            if decoder.complete:
                await stream.drain()
                return
            async for frame in stream.events:
                if deadline is not None and time.monotonic() >= deadline:
                    raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                for event in decoder.feed(frame):
                    yield event
                if decoder.complete:
                    await stream.drain()
                    return
            raise upstream_interrupted(self._name, "the connection closed before messageStop and metadata")

    async def count_tokens(
        self, request: chat_pb2.CountTokensRequest, ctx: CallContext
    ) -> chat_pb2.CountTokensResponse:
        """Exact input tokens via CountTokens (`POST /model/{modelId}/count-tokens`, `input.converse`).

        Models without token counting answer ValidationException -> UPSTREAM_INVALID_REQUEST.
        """
        body = orjson.dumps(build_count_tokens_body(request))
        response = await self._post(self._model_urls(ctx.model).count_tokens, body, ctx)
        payload = parse_json(self._name, response.content)
        tokens = payload.get("inputTokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise protocol_error(self._name, "the token count response has no integer inputTokens")
        return chat_pb2.CountTokensResponse(input_tokens=tokens, exact=True, method="provider")

    def embedding_limits(self, model: str) -> EmbeddingLimits:
        """Titan: one input per call, 8 at once; Cohere: 96 texts per call."""
        return limits_for(model)

    async def embed(
        self, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        """Embeddings via InvokeModel. See `EmbeddingProvider.embed` and embeddings.py."""
        body = orjson.dumps(build_invoke_body(request, ctx.model))
        response = await self._post(self._model_urls(ctx.model).invoke, body, ctx)
        payload = parse_json(self._name, response.content)
        return parse_invoke_response(self._name, ctx.model, payload, response.headers, len(request.inputs))

    async def list_models(self) -> list[str]:
        """Text-output foundation model ids (ListFoundationModels `byOutputModality=TEXT`), then,
        unless `options.list_inference_profiles` is false, the ids of the system-defined
        inference profiles (ListInferenceProfiles, every page), which newer models require."""
        payload = await self._get_json(self._models_url)
        summaries = payload.get("modelSummaries")
        if not isinstance(summaries, list):
            raise protocol_error(self._name, "the model list has no `modelSummaries` array")
        models = [
            s["modelId"] for s in summaries if isinstance(s, dict) and isinstance(s.get("modelId"), str)
        ]
        if self._list_profiles:
            models.extend(await self._inference_profiles())
        return list(dict.fromkeys(models))  # unique, in listing order

    async def _inference_profiles(self) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        for _ in range(_MAX_PROFILE_PAGES):
            params = {"type": "SYSTEM_DEFINED", "maxResults": "1000"}
            if token:
                params["nextToken"] = token
            payload = await self._get_json(self._profiles_url.copy_merge_params(params))
            summaries = payload.get("inferenceProfileSummaries")
            if not isinstance(summaries, list):
                raise protocol_error(
                    self._name, "the inference profile list has no `inferenceProfileSummaries`"
                )
            ids.extend(
                s["inferenceProfileId"]
                for s in summaries
                if isinstance(s, dict) and isinstance(s.get("inferenceProfileId"), str)
            )
            next_token = payload.get("nextToken")
            if not isinstance(next_token, str) or not next_token or next_token == token:
                break
            token = next_token
        return ids

    # -- HTTP plumbing ---------------------------------------------------------------------------

    def _model_urls(self, model: str) -> _ModelUrls:
        urls = self._urls.get(model)
        if urls is not None:
            return urls
        if not _MODEL_ID.fullmatch(model):
            raise invalid_field(
                "model",
                "Bedrock model ids, inference profiles and ARNs are 1-2048 characters from [A-Za-z0-9._:/-]",
            )
        # '/' (in ARNs) must be escaped to stay inside one path segment. ':' is legal in a segment
        # (RFC 3986) and is sent as is, because HTTP stacks disagree on whether to keep "%3A"
        # (yarl re-quotes it unless told not to) and the SigV4 signature covers the exact path on
        # the wire; AWS treats both spellings alike.
        base = f"{self._runtime_url}/model/{quote(model, safe=':')}"
        urls = _ModelUrls(
            httpx.URL(f"{base}/converse"),
            httpx.URL(f"{base}/converse-stream"),
            httpx.URL(f"{base}/count-tokens"),
            httpx.URL(f"{base}/invoke"),
        )
        if len(self._urls) < _URL_CACHE_SIZE:
            self._urls[model] = urls
        return urls

    async def _post(self, url: httpx.URL, body: bytes, ctx: CallContext) -> httpx.Response:
        """POST `body`; return a 2xx response, map everything else."""
        response = await post_within_deadline(
            self._client,
            self._name,
            url,
            ctx,
            self._timeouts,
            content=body,
            headers=_JSON_HEADERS,
            auth=self._auth,
        )
        if response.status_code >= 300:
            raise self._http_error(response, ctx.model)
        return response

    async def _get_json(self, url: httpx.URL) -> dict[str, Any]:
        response = await get_response(self._client, self._name, url, auth=self._auth)
        if response.status_code >= 300:
            raise self._http_error(response, "")
        payload = parse_json(self._name, response.content)
        if not isinstance(payload, dict):
            raise protocol_error(self._name, "the control plane answered with something other than an object")
        return payload

    def _http_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name,
            model,
            response.status_code,
            response.headers,
            response.content,
            throttle_delay=self._throttle_delay,
        )


class _TruncatedError(Exception):
    """The body ended inside an event-stream message."""


async def _frames(chunks: AsyncIterator[bytes], reader: FrameReader) -> AsyncGenerator[Frame, None]:
    """The event-stream messages of a body, as they complete.

    Raises:
        _TruncatedError: the body ended with part of a message buffered.
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a corrupt message.
    """
    async for chunk in chunks:
        for frame in reader.feed(chunk):
            yield frame
    if reader.pending:
        raise _TruncatedError
