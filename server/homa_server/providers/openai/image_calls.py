"""`OpenAIImages`: the `ImageProvider` methods of the OpenAI adapter (api.openai.com and compatible
servers), over the wire format of images.py.

Generation is `POST {base}/images/generations` (JSON; `stream: true` answers SSE for GPT image
models), edits and variations are multipart `POST {base}/images/edits` / `/images/variations`.
Upload limits follow the API reference: dall-e-2 takes square PNGs under 4 MB (edits and
variations), GPT image models PNG/JPEG/WebP under 50 MB; payload optimisation targets 2048 px for
the GPT image models and 1024 px for dall-e-2 (its largest output size).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, upstream_interrupted
from homa_server.media.images import UploadLimits
from homa_server.providers._http import (
    TimeoutPolicy,
    UpstreamClient,
    parse_json,
    post_within_deadline,
    upstream_timeout,
)
from homa_server.providers._sse import SSETruncated, aiter_sse
from homa_server.providers._streaming import SSE, open_stream
from homa_server.providers.base import CallContext
from homa_server.providers.openai.error_mapping import error_from_response, protocol_error
from homa_server.providers.openai.images import (
    ImageStreamDecoder,
    build_edit_form,
    build_generation_body,
    build_variation_form,
    is_gpt_image,
    parse_images,
)

__all__ = ["OpenAIImages"]

_DALL_E_2 = UploadLimits(max_side=1024, max_bytes=4 * 1024 * 1024, formats=("png",))
_GPT_IMAGE = UploadLimits(max_side=2048, max_bytes=50 * 1024 * 1024, formats=("png", "jpeg", "webp"))


class OpenAIImages:
    """Image calls for a provider that sets `_name`, `_client`, `_timeouts` and `_images_base`."""

    _name: str
    _client: UpstreamClient
    _timeouts: TimeoutPolicy
    _images_base: str

    def _images_url(self, operation: str, model: str) -> httpx.URL:
        """`{base}/images/<operation>` (Azure overrides it with its deployment URL)."""
        return httpx.URL(f"{self._images_base}/images/{operation}")

    def _images_headers(self, ctx: CallContext) -> dict[str, str]:
        return {"X-Client-Request-Id": ctx.request_id} if ctx.request_id else {}

    def _images_error(self, response: httpx.Response, model: str) -> GatewayError:
        return error_from_response(
            self._name, model, response.status_code, response.headers, response.content
        )

    def _streams_images(self, model: str) -> bool:
        """Whether `model` streams over SSE here (OpenAI: the GPT image models)."""
        return is_gpt_image(model)

    def _sends_model(self) -> bool:
        """Whether request bodies name the model (not on Azure, where the deployment URL does)."""
        return True

    def image_upload_limits(self, model: str) -> UploadLimits:
        """dall-e-2: square-ish PNG, 4 MB, 1024 px; GPT image models: PNG/JPEG/WebP, 50 MB, 2048 px."""
        return _GPT_IMAGE if is_gpt_image(model) else _DALL_E_2

    async def generate_images(
        self, request: image_pb2.GenerateRequest, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """`POST /images/generations`; see `ImageProvider.generate_images`."""
        body = orjson.dumps(build_generation_body(request, ctx.model, send_model=self._sends_model()))
        headers = {"Content-Type": "application/json", **self._images_headers(ctx)}
        payload = await self._images_post(self._images_url("generations", ctx.model), body, headers, ctx)
        return parse_images(self._name, payload, _format_name(request.output_format))

    async def stream_generate_images(
        self, request: image_pb2.StreamGenerateRequest, ctx: CallContext
    ) -> AsyncIterator[image_pb2.StreamGenerateResponse]:
        """Streamed generation (GPT image models); other models are generated whole and sent as
        one `image` event per image. See `ImageProvider.stream_generate_images`."""
        expected = request.n if request.HasField("n") else 1
        if not self._streams_images(ctx.model):
            whole = image_pb2.GenerateRequest.FromString(request.SerializeToString())
            response = await self.generate_images(whole, ctx)
            for image in response.images:
                yield image_pb2.StreamGenerateResponse(image=image)
            yield image_pb2.StreamGenerateResponse(usage=response.usage)
            return
        body = orjson.dumps(
            build_generation_body(request, ctx.model, stream=True, send_model=self._sends_model())
        )
        headers = {"Content-Type": "application/json", **self._images_headers(ctx)}
        decoder = ImageStreamDecoder(self._name)
        async with open_stream(
            self._name,
            ctx,
            self._client.stream(
                "POST",
                self._images_url("generations", ctx.model),
                content=body,
                headers=headers,
                timeout=self._timeouts.for_call(ctx),
            ),
            media_type=SSE,
            http_error=lambda response: self._images_error(response, ctx.model),
            parse=aiter_sse,
            truncated=SSETruncated,
        ) as stream:
            first = stream.first
            if first is None:
                raise upstream_interrupted(self._name, "the body ended before the first event")
            for event in decoder.feed(_event(self._name, first.data)):
                yield event
            async for sse in stream.events:
                if sse.data == b"[DONE]":
                    break
                if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                    raise upstream_timeout(self._name, "the call deadline passed mid-stream")
                for event in decoder.feed(_event(self._name, sse.data)):
                    yield event
            if decoder.completed < expected:
                raise upstream_interrupted(
                    self._name, f"the stream ended after {decoder.completed} of {expected} images"
                )
            await stream.drain()

    async def edit_images(
        self,
        request: image_pb2.EditRequest,
        images: list[content_pb2.InlineData],
        mask: content_pb2.InlineData | None,
        ctx: CallContext,
    ) -> image_pb2.GenerateResponse:
        """Multipart `POST /images/edits`; see `ImageProvider.edit_images`."""
        form = build_edit_form(request, ctx.model, images, mask, send_model=self._sends_model())
        headers = {"Content-Type": form.content_type, **self._images_headers(ctx)}
        payload = await self._images_post(self._images_url("edits", ctx.model), form.body(), headers, ctx)
        return parse_images(self._name, payload, _format_name(request.output_format))

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Multipart `POST /images/variations` (dall-e-2); see `ImageProvider.create_image_variation`."""
        form = build_variation_form(request, ctx.model, image)
        headers = {"Content-Type": form.content_type, **self._images_headers(ctx)}
        payload = await self._images_post(
            self._images_url("variations", ctx.model), form.body(), headers, ctx
        )
        return parse_images(self._name, payload)

    async def _images_post(
        self, url: httpx.URL, body: bytes, headers: dict[str, str], ctx: CallContext
    ) -> Any:
        response = await post_within_deadline(
            self._client, self._name, url, ctx, self._timeouts, content=body, headers=headers
        )
        if response.status_code >= 300:
            raise self._images_error(response, ctx.model)
        return parse_json(self._name, response.content)


def _format_name(value: int) -> str:
    if value == image_pb2.IMAGE_FORMAT_JPEG:
        return "jpeg"
    return "webp" if value == image_pb2.IMAGE_FORMAT_WEBP else "png"


def _event(provider: str, data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise protocol_error(provider, "an image stream event is not JSON") from None
