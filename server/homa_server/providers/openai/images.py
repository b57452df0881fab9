"""OpenAI Images API wire format: `POST /images/generations` (JSON, optionally SSE-streamed),
`POST /images/edits` and `POST /images/variations` (multipart/form-data).

Shared by `OpenAIProvider` and the Azure OpenAI adapter (same bodies, different URLs and auth).

Mapping (homa -> OpenAI): quality AUTO/LOW/MEDIUM/HIGH/STANDARD/HD -> auto/low/medium/high/standard/hd,
style -> vivid/natural, background -> auto/transparent/opaque, output_format -> png/jpeg/webp
(GPT image models only; dall-e models take `response_format: b64_json` instead, so every result
comes back as base64 and never as a URL). `negative_prompt`, `aspect_ratio` and `seed` have no
OpenAI equivalent and are ignored; `metadata` is never sent; `extra_body` is merged first, so fields
the adapter sets win. Input images reach the adapter inline (routing fetched URLs already).

Streaming (`stream: true`, GPT image models): the spec's `ImageGenStreamEvent`s are
`image_generation.partial_image` (with `partial_image_index`) and `image_generation.completed`
(the final image, with `usage`). The events carry no image index, so images are numbered in the
order their `completed` events arrive and partial images belong to the image being generated.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from google.protobuf import json_format

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.providers._errors import protocol_error

__all__ = [
    "ImageStreamDecoder",
    "Multipart",
    "build_edit_form",
    "build_generation_body",
    "build_variation_form",
    "is_gpt_image",
    "parse_images",
]

_QUALITY: Final = {
    image_pb2.IMAGE_QUALITY_AUTO: "auto",
    image_pb2.IMAGE_QUALITY_LOW: "low",
    image_pb2.IMAGE_QUALITY_MEDIUM: "medium",
    image_pb2.IMAGE_QUALITY_HIGH: "high",
    image_pb2.IMAGE_QUALITY_STANDARD: "standard",
    image_pb2.IMAGE_QUALITY_HD: "hd",
}
_STYLE: Final = {image_pb2.IMAGE_STYLE_VIVID: "vivid", image_pb2.IMAGE_STYLE_NATURAL: "natural"}
_BACKGROUND: Final = {
    image_pb2.IMAGE_BACKGROUND_AUTO: "auto",
    image_pb2.IMAGE_BACKGROUND_TRANSPARENT: "transparent",
    image_pb2.IMAGE_BACKGROUND_OPAQUE: "opaque",
}
_FORMAT: Final = {
    image_pb2.IMAGE_FORMAT_PNG: "png",
    image_pb2.IMAGE_FORMAT_JPEG: "jpeg",
    image_pb2.IMAGE_FORMAT_WEBP: "webp",
}
_MIME: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

GenerateLike = image_pb2.GenerateRequest | image_pb2.StreamGenerateRequest
WithExtra = GenerateLike | image_pb2.EditRequest | image_pb2.CreateVariationRequest


def is_gpt_image(model: str) -> bool:
    """Whether `model` is a GPT image model (b64 output always; output_format, background, streaming)."""
    name = model.lower()
    return name.startswith(("gpt-image", "chatgpt-image"))


def _extra(request: WithExtra) -> dict[str, Any]:
    if request.HasField("extra_body"):
        return dict(json_format.MessageToDict(request.extra_body))
    return {}


def build_generation_body(
    request: GenerateLike, model: str, *, stream: bool = False, send_model: bool = True
) -> dict[str, Any]:
    """The JSON body of `POST /images/generations` (`CreateImageRequest`); Azure passes
    `send_model=False` (the deployment in the URL names the model)."""
    body = _extra(request)
    if send_model:
        body["model"] = model
    body["prompt"] = request.prompt
    if request.HasField("n"):
        body["n"] = request.n
    if request.size:
        body["size"] = request.size
    if request.quality in _QUALITY:
        body["quality"] = _QUALITY[request.quality]
    if request.style in _STYLE:
        body["style"] = _STYLE[request.style]
    if request.user:
        body["user"] = request.user
    if is_gpt_image(model):
        if request.background in _BACKGROUND:
            body["background"] = _BACKGROUND[request.background]
        if request.output_format in _FORMAT:
            body["output_format"] = _FORMAT[request.output_format]
        if request.HasField("output_compression"):
            body["output_compression"] = request.output_compression
        if stream:
            body["stream"] = True
            partial = request.partial_images if isinstance(request, image_pb2.StreamGenerateRequest) else 0
            if partial:
                body["partial_images"] = partial
    else:
        body["response_format"] = "b64_json"
    return body


class Multipart:
    """A multipart/form-data body built in memory (fields in insertion order)."""

    def __init__(self) -> None:
        self.boundary = "homa-" + secrets.token_hex(12)
        self._parts: list[bytes] = []

    @property
    def content_type(self) -> str:
        """The request's Content-Type header value."""
        return f"multipart/form-data; boundary={self.boundary}"

    def field(self, name: str, value: str) -> None:
        """Add a text field."""
        head = f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        self._parts.append(head.encode() + value.encode() + b"\r\n")

    def file(self, name: str, filename: str, mime_type: str, data: bytes) -> None:
        """Add a file part."""
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {mime_type}\r\n\r\n"
        )
        self._parts.append(head.encode() + data + b"\r\n")

    def body(self) -> bytes:
        """The encoded body."""
        return b"".join(self._parts) + f"--{self.boundary}--\r\n".encode()


def _add_scalars(form: Multipart, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            form.field(key, "true" if value else "false")
        elif value is not None and not isinstance(value, dict | list):
            form.field(key, str(value))


def _image_file(form: Multipart, name: str, image: content_pb2.InlineData, position: int) -> None:
    mime = image.mime_type or "image/png"
    form.file(name, f"image{position}.{_EXTENSIONS.get(mime, 'png')}", mime, image.data)


def build_edit_form(
    request: image_pb2.EditRequest,
    model: str,
    images: Sequence[content_pb2.InlineData],
    mask: content_pb2.InlineData | None,
    *,
    send_model: bool = True,
) -> Multipart:
    """The multipart body of `POST /images/edits` (`CreateImageEditRequest`): `image` once per source
    image (`image[]` when there are several, as OpenAI's SDKs send), optional `mask`, then fields."""
    fields: dict[str, Any] = _extra(request)
    if send_model:
        fields["model"] = model
    fields["prompt"] = request.prompt
    if request.HasField("n"):
        fields["n"] = request.n
    if request.size:
        fields["size"] = request.size
    if request.quality in _QUALITY and request.quality != image_pb2.IMAGE_QUALITY_HD:
        fields["quality"] = _QUALITY[request.quality]
    if request.user:
        fields["user"] = request.user
    if is_gpt_image(model):
        if request.background in _BACKGROUND:
            fields["background"] = _BACKGROUND[request.background]
        if request.output_format in _FORMAT:
            fields["output_format"] = _FORMAT[request.output_format]
        if request.HasField("output_compression"):
            fields["output_compression"] = request.output_compression
    else:
        fields["response_format"] = "b64_json"
    form = Multipart()
    name = "image[]" if len(images) > 1 else "image"
    for position, image in enumerate(images):
        _image_file(form, name, image, position)
    if mask is not None:
        form.file("mask", "mask.png", mask.mime_type or "image/png", mask.data)
    _add_scalars(form, fields)
    return form


def build_variation_form(
    request: image_pb2.CreateVariationRequest, model: str, image: content_pb2.InlineData
) -> Multipart:
    """The multipart body of `POST /images/variations` (`CreateImageVariationRequest`)."""
    fields: dict[str, Any] = _extra(request)
    fields["model"] = model
    if request.HasField("n"):
        fields["n"] = request.n
    if request.size:
        fields["size"] = request.size
    if request.user:
        fields["user"] = request.user
    fields["response_format"] = "b64_json"
    form = Multipart()
    _image_file(form, "image", image, 0)
    _add_scalars(form, fields)
    return form


def _decode(provider: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise protocol_error(provider, "an image has no b64_json data")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise protocol_error(provider, "an image's b64_json is not valid base64") from None


def _dimensions(size: Any) -> tuple[int, int]:
    if isinstance(size, str) and "x" in size:
        width, _, height = size.partition("x")
        if width.isdigit() and height.isdigit():
            return int(width), int(height)
    return 0, 0


def _usage(payload: Any) -> usage_pb2.Usage:
    usage = usage_pb2.Usage()
    if isinstance(payload, dict):
        for source, target in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens")):
            value = payload.get(source)
            if isinstance(value, int):
                setattr(usage, target, value)
        total = payload.get("total_tokens")
        usage.total_tokens = total if isinstance(total, int) else usage.input_tokens + usage.output_tokens
    return usage


def parse_images(provider: str, payload: Any, default_format: str = "png") -> image_pb2.GenerateResponse:
    """An `ImagesResponse` as a GenerateResponse (the Edit and Variation responses have the same fields).

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR for a malformed body or an image given as a URL only.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise protocol_error(provider, "the images response has no `data` array")
    fmt = payload.get("output_format")
    mime = _MIME.get(fmt if isinstance(fmt, str) else default_format, "image/png")
    width, height = _dimensions(payload.get("size"))
    response = image_pb2.GenerateResponse(usage=_usage(payload.get("usage")))
    created = payload.get("created")
    if isinstance(created, int):
        response.create_time.FromSeconds(created)
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise protocol_error(provider, "an images `data` item is not an object")
        revised = item.get("revised_prompt")
        response.images.add(
            index=index,
            data=_decode(provider, item.get("b64_json")),
            mime_type=mime,
            revised_prompt=revised if isinstance(revised, str) else "",
            width=width,
            height=height,
        )
    return response


class ImageStreamDecoder:
    """Turns `ImageGenStreamEvent` JSON objects into StreamGenerateResponse events (no route/finish)."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self.completed = 0
        self.usage = usage_pb2.Usage()
        self.started = time.time()

    def feed(self, event: Any) -> Iterator[image_pb2.StreamGenerateResponse]:
        """Events for one decoded SSE payload.

        Raises:
            GatewayError: UPSTREAM_PROTOCOL_ERROR for an unknown or malformed event.
        """
        if not isinstance(event, dict):
            raise protocol_error(self._provider, "an image stream event is not an object")
        kind = event.get("type")
        fmt = event.get("output_format")
        mime = _MIME.get(fmt if isinstance(fmt, str) else "png", "image/png")
        if kind == "image_generation.partial_image":
            position = event.get("partial_image_index")
            yield image_pb2.StreamGenerateResponse(
                partial_image=image_pb2.PartialImage(
                    index=self.completed,
                    partial_image_index=position if isinstance(position, int) else 0,
                    data=_decode(self._provider, event.get("b64_json")),
                    mime_type=mime,
                )
            )
        elif kind == "image_generation.completed":
            width, height = _dimensions(event.get("size"))
            image = image_pb2.GeneratedImage(
                index=self.completed,
                data=_decode(self._provider, event.get("b64_json")),
                mime_type=mime,
                width=width,
                height=height,
            )
            self.completed += 1
            yield image_pb2.StreamGenerateResponse(image=image)
            usage = _usage(event.get("usage"))
            self.usage.input_tokens += usage.input_tokens
            self.usage.output_tokens += usage.output_tokens
            self.usage.total_tokens += usage.total_tokens
            total = usage_pb2.Usage()
            total.CopyFrom(self.usage)
            yield image_pb2.StreamGenerateResponse(usage=total)
        elif kind == "error" or "error" in event:
            raise protocol_error(self._provider, "the image stream reported an error")
        else:
            raise protocol_error(self._provider, f"unknown image stream event {kind!r}")
