"""media/images.py: decoding limits, conversion (format, fit, quality, metadata), max_bytes and upload
optimisation, on images made with Pillow in the test."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from homa_server.errors import Code, GatewayError
from homa_server.media.images import (
    ConvertOptions,
    UploadLimits,
    convert,
    decode,
    optimize_for_upload,
    parse_color,
)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def noisy(width: int, height: int) -> Image.Image:
    """An RGB image that compresses badly (so size limits matter)."""
    return Image.frombytes("RGB", (width, height), bytes((i * 7919) % 251 for i in range(width * height * 3)))


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (40, 20), (10, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "HomaCam"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPSInfo
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def violation(info: pytest.ExceptionInfo[GatewayError]) -> tuple[str, str]:
    assert info.value.code == Code.INVALID_ARGUMENT
    first = info.value.field_violations[0]
    return first.field, first.description


def test_png_to_jpeg_flattens_transparency_on_the_background() -> None:
    source = encode(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG")
    result = convert(source, ConvertOptions(format="jpeg", background=(255, 0, 0)))
    assert result.mime_type == "image/jpeg"
    assert result.quality == 85
    pixel = Image.open(io.BytesIO(result.data)).convert("RGB").getpixel((5, 5))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 240
    assert pixel[1] < 15


@pytest.mark.parametrize(
    ("fmt", "mime"), [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")]
)
def test_each_output_format_decodes_as_itself(fmt: str, mime: str) -> None:
    result = convert(encode(noisy(30, 20), "PNG"), ConvertOptions(format=fmt))  # type: ignore[arg-type]
    assert result.mime_type == mime
    assert Image.open(io.BytesIO(result.data)).format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    assert (result.width, result.height, result.source_width, result.source_height) == (30, 20, 30, 20)


def test_format_is_kept_and_gif_becomes_png() -> None:
    assert convert(encode(noisy(8, 8), "WEBP"), ConvertOptions()).mime_type == "image/webp"
    assert convert(encode(noisy(8, 8).convert("P"), "GIF"), ConvertOptions()).mime_type == "image/png"


def test_contain_keeps_aspect_and_never_upscales_by_default() -> None:
    source = encode(noisy(400, 200), "PNG")
    fitted = convert(source, ConvertOptions(width=100, height=100))
    assert (fitted.width, fitted.height) == (100, 50)
    same = convert(source, ConvertOptions(width=800))
    assert (same.width, same.height) == (400, 200)
    bigger = convert(source, ConvertOptions(width=800, allow_upscale=True))
    assert (bigger.width, bigger.height) == (800, 400)


def test_cover_fill_and_pad_give_the_exact_box() -> None:
    source = encode(noisy(400, 200), "PNG")
    for fit in ("cover", "fill", "pad"):
        result = convert(source, ConvertOptions(width=100, height=100, fit=fit))  # type: ignore[arg-type]
        assert (result.width, result.height) == (100, 100), fit


def test_exif_and_gps_are_stripped_by_default_and_kept_on_request() -> None:
    source = jpeg_with_gps()
    assert Image.open(io.BytesIO(source)).getexif().get(0x010F) == "HomaCam"
    stripped = convert(source, ConvertOptions(format="jpeg"))
    image = Image.open(io.BytesIO(stripped.data))
    assert len(image.getexif()) == 0
    assert "exif" not in image.info
    assert b"HomaCam" not in stripped.data
    kept = convert(source, ConvertOptions(format="jpeg", strip_metadata=False))
    assert Image.open(io.BytesIO(kept.data)).getexif().get(0x010F) == "HomaCam"


def test_max_bytes_lowers_quality_then_size() -> None:
    source = encode(noisy(300, 300), "PNG")
    free = convert(source, ConvertOptions(format="jpeg", quality=95))
    bounded = convert(source, ConvertOptions(format="jpeg", quality=95, max_bytes=len(free.data) // 3))
    assert len(bounded.data) <= len(free.data) // 3
    assert bounded.quality is not None
    assert bounded.quality < 95
    with pytest.raises(GatewayError) as info:
        convert(source, ConvertOptions(format="png", max_bytes=50))
    assert violation(info)[0] == "max_bytes"


def test_undecodable_unsupported_and_oversized_images_are_invalid_argument() -> None:
    with pytest.raises(GatewayError) as info:
        decode(b"definitely not an image", "image")
    assert violation(info)[0] == "image"
    with pytest.raises(GatewayError) as info:
        decode(encode(Image.new("RGB", (4, 4)), "ICO"), "image")
    assert "unsupported image format" in violation(info)[1]
    with pytest.raises(GatewayError) as info:
        decode(encode(Image.new("L", (200, 200)), "PNG"), "images[0]", max_pixels=10_000)
    assert violation(info) == ("images[0]", "the image has 200x200 pixels, more than the limit of 10000")
    with pytest.raises(GatewayError):
        decode(b"", "image")


def test_upload_optimisation_downscales_only_when_needed() -> None:
    small = encode(noisy(64, 64), "PNG")
    assert optimize_for_upload(small, UploadLimits(max_side=128), "image") == (small, "image/png")
    data, mime = optimize_for_upload(encode(noisy(512, 256), "PNG"), UploadLimits(max_side=128), "image")
    assert mime == "image/png"
    assert Image.open(io.BytesIO(data)).size == (128, 64)
    data, mime = optimize_for_upload(encode(noisy(64, 64), "JPEG"), UploadLimits(formats=("png",)), "image")
    assert mime == "image/png"
    assert Image.open(io.BytesIO(data)).format == "PNG"


def test_parse_color() -> None:
    assert parse_color("", "c") == (255, 255, 255)
    assert parse_color("#0a0B0c", "c") == (10, 11, 12)
    for bad in ("red", "#12345", "#zzzzzz"):
        with pytest.raises(GatewayError):
            parse_color(bad, "background_color")
