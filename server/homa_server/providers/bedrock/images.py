"""Bedrock image models through InvokeModel (`POST /model/{modelId}/invoke`, SigV4 like every call).

Two native body families, chosen by model id:

* Amazon Titan Image Generator (`amazon.titan-image-generator-*`) and Nova Canvas
  (`amazon.nova-canvas-*`): `{"taskType": "TEXT_IMAGE", "textToImageParams": {"text",
  "negativeText"}, "imageGenerationConfig": {"numberOfImages", "width", "height", "seed", "quality"}}`;
  Edit with a mask is `INPAINTING` (`inPaintingParams.image/maskImage/text`: the mask's transparent
  pixels become the black "edit here" area of the black-and-white mask these models take), Edit
  without one and CreateVariation are `IMAGE_VARIATION` (`imageVariationParams.images/text`). The
  answer is `{"images": [base64...], "error": null}`. Quality HIGH/HD -> "premium", else "standard".
* Stability AI (`stability.*`: SD3.5 Large, Stable Image Core/Ultra): `{"prompt", "negative_prompt",
  "aspect_ratio", "seed", "output_format"}` (+ `mode: "image-to-image"`, `image`, `strength` for
  Edit); one image per call, so `n` > 1 runs `n` calls concurrently. The answer is `{"seeds",
  "finish_reasons", "images"}`; a non-null finish reason (a filter) is CONTENT_FILTERED.

Neither family streams: StreamGenerate is served by one whole generation. Sizes are "WIDTHxHEIGHT"
for Titan/Nova, aspect ratios for Stability.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
from PIL import Image

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.media.images import UploadLimits
from homa_server.providers._http import parse_json
from homa_server.providers.base import CallContext
from homa_server.providers.bedrock.error_mapping import protocol_error

__all__ = ["BedrockImages", "is_stability"]

_TITAN_LIMITS = UploadLimits(max_side=1408, max_bytes=5 * 1024 * 1024, formats=("png", "jpeg"))
_STABILITY_LIMITS = UploadLimits(max_side=2048, max_bytes=10 * 1024 * 1024, formats=("png", "jpeg", "webp"))
_FORMATS = {image_pb2.IMAGE_FORMAT_JPEG: "jpeg", image_pb2.IMAGE_FORMAT_WEBP: "webp"}


def is_stability(model: str) -> bool:
    """Whether `model` (an id or inference profile) is a Stability AI model."""
    return "stability." in model


class BedrockImages:
    """Image calls for `BedrockProvider` (which provides `_name`, `_model_urls` and `_post`)."""

    _name: str
    _model_urls: Callable[[str], Any]
    _post: Callable[[httpx.URL, bytes, CallContext], Awaitable[httpx.Response]]

    def image_upload_limits(self, model: str) -> UploadLimits:
        """Titan/Nova: 1408 px, 5 MB, PNG or JPEG; Stability: 2048 px, 10 MB."""
        return _STABILITY_LIMITS if is_stability(model) else _TITAN_LIMITS

    async def generate_images(
        self, request: image_pb2.GenerateRequest, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Text to image; see the module docstring."""
        count = request.n if request.HasField("n") else 1
        if is_stability(ctx.model):
            body = _stability_body(request.prompt, request.negative_prompt, request)
            return await self._invoke(body, ctx, count)
        config = _titan_config(request.size, count, request.quality)
        if request.HasField("seed"):
            config["seed"] = request.seed
        text: dict[str, Any] = {"text": request.prompt}
        if request.negative_prompt:
            text["negativeText"] = request.negative_prompt
        body = {"taskType": "TEXT_IMAGE", "textToImageParams": text, "imageGenerationConfig": config}
        return await self._invoke(body, ctx, 1)

    async def stream_generate_images(
        self, request: image_pb2.StreamGenerateRequest, ctx: CallContext
    ) -> AsyncIterator[image_pb2.StreamGenerateResponse]:
        """One whole generation sent as `image` events, then the usage."""
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
        """INPAINTING (with a mask) or IMAGE_VARIATION (Titan/Nova); image-to-image (Stability)."""
        count = request.n if request.HasField("n") else 1
        if is_stability(ctx.model):
            if mask is not None:
                raise invalid_field("mask", "Stability models on Bedrock take no mask")
            body = _stability_body(request.prompt, "", request)
            body.update(mode="image-to-image", image=_b64(images[0].data), strength=0.7)
            return await self._invoke(body, ctx, count)
        config = _titan_config(request.size, count, request.quality)
        if mask is not None:
            params = {
                "image": _b64(images[0].data),
                "maskImage": _b64(_black_white_mask(mask.data)),
                "text": request.prompt,
            }
            body = {"taskType": "INPAINTING", "inPaintingParams": params, "imageGenerationConfig": config}
        else:
            variation = {"images": [_b64(i.data) for i in images[:5]], "text": request.prompt}
            body = {
                "taskType": "IMAGE_VARIATION",
                "imageVariationParams": variation,
                "imageGenerationConfig": config,
            }
        return await self._invoke(body, ctx, 1)

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """IMAGE_VARIATION (Titan/Nova); Stability has no variation task (CAPABILITY_NOT_SUPPORTED)."""
        if is_stability(ctx.model):
            raise GatewayError(
                "Stability models on Bedrock have no variation task",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": self._name, "capability": "image_variations"},
            )
        config = _titan_config(request.size, request.n if request.HasField("n") else 1, 0)
        body = {
            "taskType": "IMAGE_VARIATION",
            "imageVariationParams": {"images": [_b64(image.data)]},
            "imageGenerationConfig": config,
        }
        return await self._invoke(body, ctx, 1)

    async def _invoke(self, body: dict[str, Any], ctx: CallContext, calls: int) -> image_pb2.GenerateResponse:
        raw = orjson.dumps(body)
        url: httpx.URL = self._model_urls(ctx.model).invoke
        answers = await asyncio.gather(*(self._post(url, raw, ctx) for _ in range(calls)))
        response = image_pb2.GenerateResponse()
        for answer in answers:
            _parse_into(response, self._name, ctx.model, parse_json(self._name, answer.content))
        return response


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _titan_config(size: str, count: int, quality: int) -> dict[str, Any]:
    config: dict[str, Any] = {"numberOfImages": count}
    if size and "x" in size:
        width, _, height = size.partition("x")
        config.update(width=int(width), height=int(height))
    if quality in (image_pb2.IMAGE_QUALITY_HIGH, image_pb2.IMAGE_QUALITY_HD):
        config["quality"] = "premium"
    elif quality:
        config["quality"] = "standard"
    return config


def _stability_body(
    prompt: str, negative: str, request: image_pb2.GenerateRequest | image_pb2.EditRequest
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt}
    if negative:
        body["negative_prompt"] = negative
    if isinstance(request, image_pb2.GenerateRequest):
        if request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if request.HasField("seed"):
            body["seed"] = request.seed
    if request.output_format in _FORMATS:
        body["output_format"] = _FORMATS[request.output_format]
    return body


def _black_white_mask(data: bytes) -> bytes:
    """Our mask (transparent = repaint) as Titan's: black = repaint, white = keep, as PNG."""
    try:
        image = Image.open(io.BytesIO(data))
        alpha = image.convert("RGBA").getchannel("A")
    except OSError:
        raise invalid_field("mask", "the mask is not a readable image") from None
    out = io.BytesIO()
    alpha.point(lambda value: 255 if value > 0 else 0).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def _parse_into(response: image_pb2.GenerateResponse, provider: str, model: str, payload: Any) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        raise protocol_error(provider, "the InvokeModel answer has no `images` array")
    error = payload.get("error")
    if isinstance(error, str) and error:
        raise GatewayError(
            f"{provider} refused the image: {error}",
            Code.INVALID_ARGUMENT,
            Reason.CONTENT_FILTERED,
            metadata={"provider": provider, "model": model},
        )
    reasons = payload.get("finish_reasons")
    seeds = payload.get("seeds")
    for position, item in enumerate(payload["images"]):
        reason = reasons[position] if isinstance(reasons, list) and position < len(reasons) else None
        if isinstance(reason, str) and reason:
            raise GatewayError(
                f"{provider} withheld an image: {reason}",
                Code.INVALID_ARGUMENT,
                Reason.CONTENT_FILTERED,
                metadata={"provider": provider, "model": model},
            )
        if not isinstance(item, str):
            raise protocol_error(provider, "an image is not a base64 string")
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise protocol_error(provider, "an image is not valid base64") from None
        image = response.images.add(index=len(response.images), data=data, mime_type=_mime(data))
        if isinstance(seeds, list) and position < len(seeds) and isinstance(seeds[position], int):
            image.seed = seeds[position]


def _mime(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"
