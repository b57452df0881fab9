"""Gemini image models (for example gemini-2.5-flash-image) through `models/{model}:generateContent`.

Generation sends the prompt as one user text part with `generationConfig.responseModalities:
["TEXT", "IMAGE"]`, `imageConfig.aspectRatio` from `aspect_ratio` and `seed`; images come back as
`inlineData` parts of the first candidate. Gemini returns one image per call, so `n` > 1 runs `n`
calls concurrently (usage summed). `size`, quality, style, background and output format have no
Gemini equivalent and are not sent. Edits send the source images as `inlineData` parts before the
prompt; Gemini has no masks (a mask is INVALID_ARGUMENT) and no variations endpoint
(CAPABILITY_NOT_SUPPORTED). Gemini does not stream partial images: StreamGenerate is served by one
whole generation. A blocked prompt is CONTENT_FILTERED; an answer without any image is
CONTENT_FILTERED too when the candidate's finish reason names a safety stop, else
UPSTREAM_PROTOCOL_ERROR.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason, invalid_field
from homa_server.media.images import UploadLimits
from homa_server.providers.base import CallContext
from homa_server.providers.gemini.chat_response import check_prompt
from homa_server.providers.gemini.error_mapping import content_filtered, protocol_error
from homa_server.providers.gemini.media import unb64

__all__ = ["GeminiImages"]

_LIMITS = UploadLimits(max_side=2048, max_bytes=15 * 1024 * 1024)
_SAFETY = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "IMAGE_PROHIBITED_CONTENT"})


class GeminiImages:
    """Image calls for `GeminiProvider` (which provides `_name`, `_model_urls` and `_post_json`)."""

    _name: str
    _model_urls: Callable[[str], Any]  # GeminiProvider's per-model URLs (`.generate`)
    _post_json: Callable[[httpx.URL, bytes, CallContext], Awaitable[Any]]

    def image_upload_limits(self, model: str) -> UploadLimits:
        """2048 px, 15 MB per image (Gemini caps a whole inline request at 20 MB)."""
        return _LIMITS

    async def generate_images(
        self, request: image_pb2.GenerateRequest, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """`n` concurrent generateContent calls with image output; see the module docstring."""
        return await self._generate(request, [], ctx, request.n if request.HasField("n") else 1)

    async def stream_generate_images(
        self, request: image_pb2.StreamGenerateRequest, ctx: CallContext
    ) -> AsyncIterator[image_pb2.StreamGenerateResponse]:
        """One whole generation sent as `image` events, then the usage."""
        whole = image_pb2.GenerateRequest.FromString(request.SerializeToString())
        response = await self.generate_images(whole, ctx)
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
        """Source images as inlineData parts, then the prompt."""
        if mask is not None:
            raise invalid_field(
                "mask", "Gemini image models do not take masks; describe the area in the prompt"
            )
        generate = image_pb2.GenerateRequest(prompt=request.prompt)
        return await self._generate(generate, images, ctx, request.n if request.HasField("n") else 1)

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Not offered by Gemini: FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED."""
        raise GatewayError(
            "Gemini has no image variations endpoint",
            Code.FAILED_PRECONDITION,
            Reason.CAPABILITY_NOT_SUPPORTED,
            metadata={"provider": self._name, "capability": "image_variations"},
        )

    async def _generate(
        self,
        request: image_pb2.GenerateRequest,
        images: Sequence[content_pb2.InlineData],
        ctx: CallContext,
        count: int,
    ) -> image_pb2.GenerateResponse:
        body = orjson.dumps(_body(request, images))
        url: httpx.URL = self._model_urls(ctx.model).generate
        payloads = await asyncio.gather(*(self._post_json(url, body, ctx) for _ in range(count)))
        response = image_pb2.GenerateResponse()
        for payload in payloads:
            _parse_into(response, self._name, ctx.model, payload)
        response.usage.total_tokens = response.usage.input_tokens + response.usage.output_tokens
        return response


def _body(request: image_pb2.GenerateRequest, images: Sequence[content_pb2.InlineData]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {
            "inlineData": {
                "mimeType": image.mime_type or "image/png",
                "data": base64.b64encode(image.data).decode(),
            }
        }
        for image in images
    ]
    parts.append({"text": request.prompt})
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if request.aspect_ratio and not request.size:
        config["imageConfig"] = {"aspectRatio": request.aspect_ratio}
    if request.HasField("seed"):
        config["seed"] = request.seed
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def _parse_into(response: image_pb2.GenerateResponse, provider: str, model: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise protocol_error(provider, "the generateContent answer is not an object")
    check_prompt(provider, model, payload)
    candidates = payload.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else {}
    content = first.get("content") if isinstance(first, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    found = 0
    for part in parts if isinstance(parts, list) else []:
        inline = part.get("inlineData") if isinstance(part, dict) else None
        if isinstance(inline, dict) and str(inline.get("mimeType", "")).startswith("image/"):
            response.images.add(
                index=len(response.images),
                data=_image_bytes(provider, inline.get("data")),
                mime_type=str(inline["mimeType"]),
            )
            found += 1
    if not found:
        reason = first.get("finishReason") if isinstance(first, dict) else None
        if isinstance(reason, str) and reason in _SAFETY:
            raise content_filtered(provider, model, reason)
        raise protocol_error(provider, "the answer holds no image")
    usage = payload.get("usageMetadata")
    if isinstance(usage, dict):
        add = usage_pb2.Usage(
            input_tokens=int(usage.get("promptTokenCount", 0) or 0),
            output_tokens=int(usage.get("candidatesTokenCount", 0) or 0),
        )
        response.usage.input_tokens += add.input_tokens
        response.usage.output_tokens += add.output_tokens


def _image_bytes(provider: str, data: Any) -> bytes:
    if not isinstance(data, str):
        raise protocol_error(provider, "an image part has no data")
    try:
        return unb64(data)
    except ValueError:
        raise protocol_error(provider, "an image part is not valid base64") from None
