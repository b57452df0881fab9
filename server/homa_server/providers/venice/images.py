"""Venice image models through Venice's native endpoints.

* Generate: `POST /image/generate` (JSON `GenerateImageRequest`) with `return_binary: false`, so the
  answer is JSON with base64 `images`. `n` maps to `variants` (1..4; more is INVALID_ARGUMENT),
  `size` "WxH" to `width`/`height` (at most 1280 each), `aspect_ratio`, `negative_prompt`, `seed`,
  quality LOW/MEDIUM/HIGH, output format `format` (PNG unless asked: Venice's own default is WebP).
* Edit: `POST /image/edit` (JSON `EditImageRequest`: `image` as base64, `prompt`, `output_format`);
  the answer is the edited image's bytes. One source image, no mask (INVALID_ARGUMENT otherwise).
* No variations endpoint (CAPABILITY_NOT_SUPPORTED) and no streamed images: StreamGenerate is
  served by one whole generation. Venice reports no token usage for images.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.media.images import UploadLimits
from homa_server.providers._errors import protocol_error
from homa_server.providers._http import TimeoutPolicy, UpstreamClient, parse_json, post_within_deadline
from homa_server.providers.base import CallContext

__all__ = ["VeniceImages"]

_LIMITS = UploadLimits(max_side=2048, max_bytes=10 * 1024 * 1024)
_QUALITY = {
    image_pb2.IMAGE_QUALITY_LOW: "low",
    image_pb2.IMAGE_QUALITY_MEDIUM: "medium",
    image_pb2.IMAGE_QUALITY_HIGH: "high",
}
_FORMATS = {image_pb2.IMAGE_FORMAT_JPEG: "jpeg", image_pb2.IMAGE_FORMAT_WEBP: "webp"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_JSON = {"Content-Type": "application/json"}


class VeniceImages:
    """Image calls for `VeniceProvider` (`_name`, `_client`, `_timeouts`, `_chat_url`, `_check_response`)."""

    _name: str
    _client: UpstreamClient
    _timeouts: TimeoutPolicy
    _chat_url: httpx.URL
    _check_response: Callable[[httpx.Response, str], None]

    def _image_url(self, path: str) -> httpx.URL:
        return httpx.URL(str(self._chat_url).removesuffix("/chat/completions") + path)

    def image_upload_limits(self, model: str) -> UploadLimits:
        """2048 px, 10 MB."""
        return _LIMITS

    async def generate_images(
        self, request: image_pb2.GenerateRequest, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """`POST /image/generate`; see the module docstring."""
        fmt = _FORMATS.get(request.output_format, "png")
        body: dict[str, Any] = {
            "model": ctx.model,
            "prompt": request.prompt,
            "format": fmt,
            "return_binary": False,
        }
        if request.HasField("n"):
            if request.n > 4:
                raise invalid_field("n", "Venice generates at most 4 images per request")
            body["variants"] = request.n
        if request.size and "x" in request.size:
            width, _, height = request.size.partition("x")
            if int(width) > 1280 or int(height) > 1280:
                raise invalid_field("size", "Venice images are at most 1280 pixels on each side")
            body.update(width=int(width), height=int(height))
        elif request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if request.HasField("seed"):
            body["seed"] = request.seed
        if request.quality in _QUALITY:
            body["quality"] = _QUALITY[request.quality]
        response = await self._post_image("/image/generate", body, ctx)
        payload = parse_json(self._name, response.content)
        images = payload.get("images") if isinstance(payload, dict) else None
        if not isinstance(images, list):
            raise protocol_error(self._name, "the image answer has no `images` array")
        result = image_pb2.GenerateResponse(id=str(payload.get("id", "")))
        for item in images:
            result.images.add(index=len(result.images), data=_decode(self._name, item), mime_type=_MIME[fmt])
        return result

    async def stream_generate_images(
        self, request: image_pb2.StreamGenerateRequest, ctx: CallContext
    ) -> AsyncIterator[image_pb2.StreamGenerateResponse]:
        """One whole generation sent as `image` events, then the (empty) usage."""
        response = await self.generate_images(
            image_pb2.GenerateRequest.FromString(request.SerializeToString()), ctx
        )
        for image in response.images:
            yield image_pb2.StreamGenerateResponse(image=image)
        yield image_pb2.StreamGenerateResponse(usage=response.usage)

    async def edit_images(
        self,
        request: image_pb2.EditRequest,
        images: list[content_pb2.InlineData],
        mask: content_pb2.InlineData | None,
        ctx: CallContext,
    ) -> image_pb2.GenerateResponse:
        """`POST /image/edit` with one base64 image; the answer is the image bytes."""
        if mask is not None:
            raise invalid_field("mask", "Venice edits take no mask; describe the change in the prompt")
        if len(images) != 1:
            raise invalid_field("images", "Venice edits exactly one image")
        body: dict[str, Any] = {
            "model": ctx.model,
            "prompt": request.prompt,
            "image": base64.b64encode(images[0].data).decode(),
        }
        if request.output_format in _FORMATS or request.output_format == image_pb2.IMAGE_FORMAT_PNG:
            body["output_format"] = _FORMATS.get(request.output_format, "png")
        response = await self._post_image("/image/edit", body, ctx)
        mime = response.headers.get("content-type", "").split(";")[0].strip()
        if not mime.startswith("image/") or not response.content:
            raise protocol_error(self._name, "the edit answer is not an image")
        return image_pb2.GenerateResponse(
            images=[image_pb2.GeneratedImage(index=0, data=response.content, mime_type=mime)]
        )

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Not offered by Venice: FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED."""
        raise GatewayError(
            "Venice has no image variations endpoint",
            Code.FAILED_PRECONDITION,
            Reason.CAPABILITY_NOT_SUPPORTED,
            metadata={"provider": self._name, "capability": "image_variations"},
        )

    async def _post_image(self, path: str, body: dict[str, Any], ctx: CallContext) -> httpx.Response:
        response = await post_within_deadline(
            self._client,
            self._name,
            self._image_url(path),
            ctx,
            self._timeouts,
            content=orjson.dumps(body),
            headers=_JSON,
        )
        self._check_response(response, ctx.model)
        return response


def _decode(provider: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise protocol_error(provider, "an image is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise protocol_error(provider, "an image is not valid base64") from None
