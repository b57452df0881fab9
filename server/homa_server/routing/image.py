"""Image dispatch: validate, resolve, load and optimise inputs, call the provider, meter.

Contract of `ImageDispatcher`:
    * Requests are validated first (validation/image.py); nothing is fetched or sent for an invalid one.
    * `convert` runs Pillow locally in a worker thread (media/images.py); no provider, no usage record.
    * The model resolves like chat models (routing/resolver.py); a provider that is not an
      `ImageProvider` answers FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
    * Input images (Edit, CreateVariation, Analyze) are loaded concurrently: inline bytes as given,
      URLs through the SSRF guard (media/sources.py). Each is then decoded (pixel limit, format) and,
      when the request's `optimize_upload` (else `ImageOptions.optimize_upload`) allows it, fitted to
      the provider's `image_upload_limits` (payload optimisation).
    * Generate, StreamGenerate, Edit and CreateVariation write one usage record (`images` = images
      returned) per call via `ImageMeter`; Analyze runs through the chat dispatcher
      (`complete` with the images as inline parts), which meters it.
    * StreamGenerate yields `route` first and, on success, exactly one `finish` last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.media.images import (
    DEFAULT_MAX_PIXELS,
    ConvertOptions,
    Fit,
    OutputFormat,
    UploadLimits,
    convert,
    decode,
    optimize_for_upload,
    parse_color,
)
from homa_server.media.sources import FetchPolicy, load_image
from homa_server.providers.base import CallContext, ImageProvider
from homa_server.routing.image_metering import ImageMeter
from homa_server.routing.resolver import ModelResolver, Target
from homa_server.store.records import Recorder, new_id
from homa_server.validation.image import (
    validate_analyze,
    validate_convert,
    validate_edit,
    validate_generate,
    validate_variation,
)

__all__ = ["ChatCompleter", "ImageDispatcher", "ImageOptions"]

_FORMATS: dict[int, OutputFormat] = {
    image_pb2.IMAGE_FORMAT_PNG: "png",
    image_pb2.IMAGE_FORMAT_JPEG: "jpeg",
    image_pb2.IMAGE_FORMAT_WEBP: "webp",
}
_FITS: dict[int, Fit] = {
    image_pb2.FIT_MODE_COVER: "cover",
    image_pb2.FIT_MODE_FILL: "fill",
    image_pb2.FIT_MODE_PAD: "pad",
}
#: Analyze inputs: vision models see at most about 2048 px on the longest side.
_VISION_LIMITS = UploadLimits(max_side=2048, max_bytes=20 * 1024 * 1024)


class ChatCompleter(Protocol):
    """What Analyze needs of the chat dispatcher."""

    async def complete(
        self, request: chat_pb2.CompleteRequest, remaining: float | None, request_id: str = ""
    ) -> chat_pb2.CompleteResponse:
        """One whole chat completion (metered by the chat path)."""
        ...


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """Server-side image settings: pixel limit, default payload optimisation, URL fetching."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    optimize_upload: bool = True
    fetch: FetchPolicy = field(default_factory=FetchPolicy)


class ImageDispatcher:
    """Runs ImageService calls. Built once per process.

    Args:
        resolver: model names to providers.
        chat: the chat dispatcher (Analyze).
        recorder: where usage records go (None: not recorded).
        options: server-side image settings.
    """

    def __init__(
        self,
        resolver: ModelResolver,
        chat: ChatCompleter,
        recorder: Recorder | None = None,
        options: ImageOptions | None = None,
    ) -> None:
        self._resolver = resolver
        self._chat = chat
        self.recorder = recorder
        self.options = options or ImageOptions()

    # -- local ---------------------------------------------------------------------------------

    async def convert(self, request: image_pb2.ConvertRequest) -> image_pb2.ConvertResponse:
        """ImageService.Convert (see media/images.py `convert`)."""
        validate_convert(request)
        options = ConvertOptions(
            format=_FORMATS.get(request.format),
            width=request.width if request.HasField("width") else None,
            height=request.height if request.HasField("height") else None,
            fit=_FITS.get(request.fit, "contain"),
            allow_upscale=request.allow_upscale,
            quality=request.quality if request.HasField("quality") else None,
            lossless=request.lossless,
            strip_metadata=request.strip_metadata if request.HasField("strip_metadata") else True,
            max_bytes=request.max_bytes if request.HasField("max_bytes") else None,
            background=parse_color(request.background_color, "background_color"),
        )
        result = await asyncio.to_thread(convert, request.image.data, options, self.options.max_pixels)
        response = image_pb2.ConvertResponse(
            data=result.data,
            mime_type=result.mime_type,
            width=result.width,
            height=result.height,
            source_width=result.source_width,
            source_height=result.source_height,
            source_bytes=result.source_bytes,
        )
        if result.quality is not None:
            response.quality = result.quality
        return response

    # -- provider calls ------------------------------------------------------------------------

    async def generate(
        self, request: image_pb2.GenerateRequest, remaining: float | None, request_id: str = ""
    ) -> image_pb2.GenerateResponse:
        """ImageService.Generate."""
        validate_generate(request)
        target, provider = self._resolve(request.model)
        meter = self._meter("image.Generate", provider, target)
        error: BaseException | None = None
        try:
            response = await provider.generate_images(request, _ctx(target, remaining, request_id))
            meter.images, meter.usage = len(response.images), response.usage
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)
        return _finished(response, provider, target)

    async def stream_generate(
        self, request: image_pb2.StreamGenerateRequest, remaining: float | None, request_id: str = ""
    ) -> AsyncGenerator[image_pb2.StreamGenerateResponse, None]:
        """ImageService.StreamGenerate: route, provider events, finish."""
        validate_generate(request)
        target, provider = self._resolve(request.model)
        meter = self._meter("image.StreamGenerate", provider, target)
        error: BaseException | None = None
        generation_id = new_id("img")
        try:
            yield image_pb2.StreamGenerateResponse(route=_route(provider, target))
            ctx = _ctx(target, remaining, request_id)
            async with aclosing(provider.stream_generate_images(request, ctx)) as events:
                async for event in events:
                    kind = event.WhichOneof("event")
                    if kind == "image":
                        meter.images += 1
                    elif kind == "usage":
                        meter.usage = event.usage
                    yield event
            finish = image_pb2.Finish(
                reason=usage_pb2.FINISH_REASON_STOP,
                raw_reason="completed",
                id=generation_id,
                image_count=meter.images,
            )
            yield image_pb2.StreamGenerateResponse(finish=finish)
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)

    async def edit(
        self, request: image_pb2.EditRequest, remaining: float | None, request_id: str = ""
    ) -> image_pb2.EditResponse:
        """ImageService.Edit: images (and mask) loaded, checked, optimised, then sent."""
        validate_edit(request)
        target, provider = self._resolve(request.model)
        optimise = (
            request.optimize_upload if request.HasField("optimize_upload") else self.options.optimize_upload
        )
        limits = provider.image_upload_limits(target.model)
        sources = [(f"images[{i}]", image) for i, image in enumerate(request.images)]
        if request.HasField("mask"):
            sources.append(("mask", request.mask))
        loaded = await self._load(sources, limits if optimise else None)
        mask = loaded.pop() if request.HasField("mask") else None
        meter = self._meter("image.Edit", provider, target)
        error: BaseException | None = None
        try:
            response = await provider.edit_images(request, loaded, mask, _ctx(target, remaining, request_id))
            meter.images, meter.usage = len(response.images), response.usage
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)
        return image_pb2.EditResponse.FromString(_finished(response, provider, target).SerializeToString())

    async def create_variation(
        self, request: image_pb2.CreateVariationRequest, remaining: float | None, request_id: str = ""
    ) -> image_pb2.CreateVariationResponse:
        """ImageService.CreateVariation."""
        validate_variation(request)
        target, provider = self._resolve(request.model)
        optimise = (
            request.optimize_upload if request.HasField("optimize_upload") else self.options.optimize_upload
        )
        limits = provider.image_upload_limits(target.model)
        (image,) = await self._load([("image", request.image)], limits if optimise else None)
        meter = self._meter("image.CreateVariation", provider, target)
        error: BaseException | None = None
        try:
            response = await provider.create_image_variation(
                request, image, _ctx(target, remaining, request_id)
            )
            meter.images, meter.usage = len(response.images), response.usage
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.close(error)
        return image_pb2.CreateVariationResponse.FromString(
            _finished(response, provider, target).SerializeToString()
        )

    async def analyze(
        self, request: image_pb2.AnalyzeRequest, remaining: float | None, request_id: str = ""
    ) -> image_pb2.AnalyzeResponse:
        """ImageService.Analyze through the chat dispatcher (a user message: prompt + images)."""
        validate_analyze(request)
        optimise = (
            request.optimize_upload if request.HasField("optimize_upload") else self.options.optimize_upload
        )
        images = await self._load(
            [(f"images[{i}]", image) for i, image in enumerate(request.images)],
            _VISION_LIMITS if optimise else None,
        )
        chat = chat_pb2.CompleteRequest(model=request.model, user=request.user)
        chat.metadata.update(request.metadata)
        if request.system_instruction:
            chat.messages.add(role=content_pb2.ROLE_SYSTEM).parts.add(text=request.system_instruction)
        message = chat.messages.add(role=content_pb2.ROLE_USER)
        message.parts.add(text=request.prompt)
        for image in images:
            message.parts.add(inline_data=image)
        if request.HasField("max_output_tokens"):
            chat.max_output_tokens = request.max_output_tokens
        if request.HasField("temperature"):
            chat.temperature = request.temperature
        if request.HasField("response_format"):
            chat.response_format.CopyFrom(request.response_format)
        answer = await self._chat.complete(chat, remaining, request_id)
        return image_pb2.AnalyzeResponse(
            text="".join(part.text for part in answer.message.parts if part.WhichOneof("kind") == "text"),
            finish_reason=answer.finish_reason,
            raw_finish_reason=answer.raw_finish_reason,
            usage=answer.usage,
            route=answer.route,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _resolve(self, model: str) -> tuple[Target, ImageProvider]:
        target = self._resolver.resolve(model)
        provider = target.provider
        if not isinstance(provider, ImageProvider):
            raise GatewayError(
                f"provider {provider.name!r} cannot generate or edit images",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": provider.name, "capability": "images"},
            )
        return target, provider

    def _meter(self, method: str, provider: ImageProvider, target: Target) -> ImageMeter:
        return ImageMeter(self.recorder, method, provider.name, provider.kind, target.model)

    async def _load(
        self, sources: Sequence[tuple[str, image_pb2.ImageInput]], limits: UploadLimits | None
    ) -> list[content_pb2.InlineData]:
        """Load every input concurrently (the first failure cancels the rest), then check/optimise."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(load_image(image, name, self.options.fetch)) for name, image in sources
                ]
        except ExceptionGroup as failed:  # the first failure, as is (its siblings were cancelled)
            raise failed.exceptions[0] from None
        return list(
            await asyncio.gather(
                *(
                    self._prepare(task.result(), name, limits)
                    for task, (name, _) in zip(tasks, sources, strict=True)
                )
            )
        )

    async def _prepare(
        self, image: content_pb2.InlineData, name: str, limits: UploadLimits | None
    ) -> content_pb2.InlineData:
        if limits is None:
            await asyncio.to_thread(decode, image.data, name, self.options.max_pixels)
            return image
        data, mime = await asyncio.to_thread(
            optimize_for_upload, image.data, limits, name, self.options.max_pixels
        )
        if data is image.data:
            return image
        return content_pb2.InlineData(mime_type=mime, data=data, detail=image.detail)


def _ctx(target: Target, remaining: float | None, request_id: str) -> CallContext:
    return CallContext(
        model=target.model,
        deadline=None if remaining is None else time.monotonic() + remaining,
        request_id=request_id,
    )


def _route(provider: ImageProvider, target: Target) -> usage_pb2.Route:
    return usage_pb2.Route(provider=provider.name, model=target.model, attempt=1)


def _finished(
    response: image_pb2.GenerateResponse, provider: ImageProvider, target: Target
) -> image_pb2.GenerateResponse:
    response.route.CopyFrom(_route(provider, target))
    if not response.id:
        response.id = new_id("img")
    if not response.HasField("create_time"):
        response.create_time.GetCurrentTime()
    return response
