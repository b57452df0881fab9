"""Provider-independent checks of ImageService requests, before routing (no upstream call is made).

Every problem is reported at once as INVALID_ARGUMENT with one BadRequest field violation each:
missing prompt or images, counts outside the documented ranges (n 1..10, edit images 1..16, analyze
images 1..20, partial images 0..3), malformed `size` ("WIDTHxHEIGHT" or "auto"), compression and
quality outside 0..100 / 1..100, an image input with no source, empty inline bytes or an empty URI,
transparent backgrounds with JPEG output, and unknown enum values. Image bytes themselves are
checked when they are decoded (media/images.py); model-specific limits are the adapters'.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from homa.image.v1 import image_service_pb2 as image_pb2
from homa_server.errors import FieldViolation, invalid_argument

__all__ = [
    "MAX_ANALYZE_IMAGES",
    "MAX_EDIT_IMAGES",
    "MAX_N",
    "validate_analyze",
    "validate_convert",
    "validate_edit",
    "validate_generate",
    "validate_variation",
]

MAX_N = 10
MAX_EDIT_IMAGES = 16
MAX_ANALYZE_IMAGES = 20
MAX_SIDE = 16384
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")

GenerateLike = image_pb2.GenerateRequest | image_pb2.StreamGenerateRequest


def _raise(kind: str, violations: list[FieldViolation]) -> None:
    if violations:
        first = violations[0]
        raise invalid_argument(f"invalid {kind} request: {first.field}: {first.description}", *violations)


def _prompt(prompt: str, out: list[FieldViolation]) -> None:
    if not prompt.strip():
        out.append(FieldViolation("prompt", "is required"))


def _n(
    request: GenerateLike | image_pb2.EditRequest | image_pb2.CreateVariationRequest,
    out: list[FieldViolation],
) -> None:
    if request.HasField("n") and not 1 <= request.n <= MAX_N:
        out.append(FieldViolation("n", f"must be between 1 and {MAX_N}"))


def _size(size: str, out: list[FieldViolation]) -> None:
    if size and size != "auto" and not _SIZE.match(size):
        out.append(FieldViolation("size", 'must be "WIDTHxHEIGHT" (for example "1024x1024") or "auto"'))


def _output(
    request: GenerateLike | image_pb2.EditRequest, fmt: int, out: list[FieldViolation], *, with_style: bool
) -> None:
    if request.quality not in image_pb2.ImageQuality.values():
        out.append(FieldViolation("quality", "unknown value"))
    if (
        with_style
        and isinstance(request, GenerateLike)
        and request.style not in image_pb2.ImageStyle.values()
    ):
        out.append(FieldViolation("style", "unknown value"))
    if request.background not in image_pb2.ImageBackground.values():
        out.append(FieldViolation("background", "unknown value"))
    if fmt not in image_pb2.ImageFormat.values():
        out.append(FieldViolation("output_format", "unknown value"))
    if request.background == image_pb2.IMAGE_BACKGROUND_TRANSPARENT and fmt == image_pb2.IMAGE_FORMAT_JPEG:
        out.append(FieldViolation("background", "a transparent background needs PNG or WebP output"))
    if request.HasField("output_compression") and not 0 <= request.output_compression <= 100:
        out.append(FieldViolation("output_compression", "must be between 0 and 100"))


def _inputs(field: str, images: Sequence[image_pb2.ImageInput], out: list[FieldViolation]) -> None:
    for index, image in enumerate(images):
        _input(f"{field}[{index}]", image, out)


def _input(field: str, image: image_pb2.ImageInput, out: list[FieldViolation]) -> None:
    source = image.WhichOneof("source")
    if source is None:
        out.append(FieldViolation(field, "set inline_data or file_uri"))
    elif source == "inline_data" and not image.inline_data.data:
        out.append(FieldViolation(f"{field}.inline_data.data", "must not be empty"))
    elif source == "file_uri" and not image.file_uri.uri.strip():
        out.append(FieldViolation(f"{field}.file_uri.uri", "must not be empty"))


def validate_generate(request: GenerateLike) -> None:
    """Raise INVALID_ARGUMENT listing every problem of a (Stream)GenerateRequest."""
    out: list[FieldViolation] = []
    _prompt(request.prompt, out)
    _n(request, out)
    _size(request.size, out)
    _output(request, request.output_format, out, with_style=True)
    partial = request.partial_images if isinstance(request, image_pb2.StreamGenerateRequest) else 0
    if not 0 <= partial <= 3:
        out.append(FieldViolation("partial_images", "must be between 0 and 3"))
    _raise("generate", out)


def validate_edit(request: image_pb2.EditRequest) -> None:
    """Raise INVALID_ARGUMENT listing every problem of an EditRequest."""
    out: list[FieldViolation] = []
    _prompt(request.prompt, out)
    if not request.images:
        out.append(FieldViolation("images", "at least one image is required"))
    elif len(request.images) > MAX_EDIT_IMAGES:
        out.append(FieldViolation("images", f"at most {MAX_EDIT_IMAGES} images"))
    _inputs("images", request.images, out)
    if request.HasField("mask"):
        _input("mask", request.mask, out)
    _n(request, out)
    _size(request.size, out)
    _output(request, request.output_format, out, with_style=False)
    _raise("edit", out)


def validate_variation(request: image_pb2.CreateVariationRequest) -> None:
    """Raise INVALID_ARGUMENT listing every problem of a CreateVariationRequest."""
    out: list[FieldViolation] = []
    if not request.HasField("image"):
        out.append(FieldViolation("image", "is required"))
    else:
        _input("image", request.image, out)
    _n(request, out)
    _size(request.size, out)
    if request.output_format not in image_pb2.ImageFormat.values():
        out.append(FieldViolation("output_format", "unknown value"))
    _raise("variation", out)


def validate_analyze(request: image_pb2.AnalyzeRequest) -> None:
    """Raise INVALID_ARGUMENT listing every problem of an AnalyzeRequest."""
    out: list[FieldViolation] = []
    _prompt(request.prompt, out)
    if not request.images:
        out.append(FieldViolation("images", "at least one image is required"))
    elif len(request.images) > MAX_ANALYZE_IMAGES:
        out.append(FieldViolation("images", f"at most {MAX_ANALYZE_IMAGES} images"))
    _inputs("images", request.images, out)
    if request.HasField("max_output_tokens") and request.max_output_tokens < 1:
        out.append(FieldViolation("max_output_tokens", "must be at least 1"))
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        out.append(FieldViolation("temperature", "must be between 0 and 2"))
    _raise("analyze", out)


def validate_convert(request: image_pb2.ConvertRequest) -> None:
    """Raise INVALID_ARGUMENT listing every problem of a ConvertRequest (bytes are checked on decode)."""
    out: list[FieldViolation] = []
    if not request.image.data:
        out.append(FieldViolation("image.data", "must not be empty"))
    if request.format not in image_pb2.ImageFormat.values():
        out.append(FieldViolation("format", "unknown value"))
    if request.fit not in image_pb2.FitMode.values():
        out.append(FieldViolation("fit", "unknown value"))
    for name in ("width", "height"):
        if request.HasField(name) and not 1 <= getattr(request, name) <= MAX_SIDE:
            out.append(FieldViolation(name, f"must be between 1 and {MAX_SIDE}"))
    if request.HasField("quality") and not 1 <= request.quality <= 100:
        out.append(FieldViolation("quality", "must be between 1 and 100"))
    if request.HasField("max_bytes") and request.max_bytes < 1:
        out.append(FieldViolation("max_bytes", "must be at least 1"))
    _raise("convert", out)
