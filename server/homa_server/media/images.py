"""Image decoding, conversion and upload optimisation with Pillow, inside the gateway.

Contract:

* `decode(data, field, max_pixels)` opens PNG, JPEG, WebP, GIF (first frame), BMP or TIFF bytes and
  checks the pixel count BEFORE decoding pixels (decompression bombs are refused). Undecodable bytes,
  other formats and images over `max_pixels` raise INVALID_ARGUMENT (reason INVALID_REQUEST) with a
  BadRequest violation on `field`.
* `convert(data, options)` implements ImageService.Convert: target format (default: keep PNG/JPEG/
  WebP, anything else becomes PNG), fit into width x height (CONTAIN/COVER/FILL/PAD; never enlarges
  unless `allow_upscale`), quality, lossless WebP, metadata stripping (EXIF incl. GPS, XMP, comments
  and ICC profiles are dropped and colours converted to sRGB; on by default) and `max_bytes` (quality is
  lowered, then dimensions, until the output fits, else INVALID_ARGUMENT on `max_bytes`).
* `optimize_for_upload(data, limits)` is the "payload optimisation" of uploads: an image larger than the
  provider's limits (longest side, bytes) is downscaled and re-encoded, always metadata-free; an image
  already within limits is returned unchanged (bytes identical).

All functions are CPU-bound and synchronous: async callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from homa_server.errors import invalid_field

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_QUALITY",
    "MIME_TYPES",
    "ConvertOptions",
    "ConvertedImage",
    "Fit",
    "OutputFormat",
    "UploadLimits",
    "convert",
    "decode",
    "optimize_for_upload",
    "parse_color",
]

OutputFormat = Literal["png", "jpeg", "webp"]
Fit = Literal["contain", "cover", "fill", "pad"]

DEFAULT_MAX_PIXELS: Final = 50_000_000
DEFAULT_QUALITY: Final = 85
MIME_TYPES: Final[dict[str, str]] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_READABLE: Final = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
_OUTPUT: Final[dict[str, OutputFormat]] = {"png": "png", "jpeg": "jpeg", "webp": "webp"}
_MIN_QUALITY: Final = 10
_SHRINK: Final = 0.75  # dimension factor per step when lowering quality is not enough


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """What `convert` produces; None means "keep" (format, size) or the default (quality 85)."""

    format: OutputFormat | None = None
    width: int | None = None
    height: int | None = None
    fit: Fit = "contain"
    allow_upscale: bool = False
    quality: int | None = None
    lossless: bool = False
    strip_metadata: bool = True
    max_bytes: int | None = None
    background: tuple[int, int, int] = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class ConvertedImage:
    """An encoded image and what was done. `quality` is None for lossless output (PNG, lossless WebP)."""

    data: bytes
    mime_type: str
    width: int
    height: int
    quality: int | None
    source_width: int
    source_height: int
    source_bytes: int


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """A provider's upload limits: longest side in pixels, encoded bytes, and accepted formats."""

    max_side: int = 2048
    max_bytes: int = 20 * 1024 * 1024
    formats: tuple[OutputFormat, ...] = ("png", "jpeg", "webp")


def parse_color(value: str, field: str) -> tuple[int, int, int]:
    """`#RRGGBB` (empty = white) as an RGB tuple; INVALID_ARGUMENT on `field` otherwise."""
    if not value:
        return (255, 255, 255)
    text = value[1:] if value.startswith("#") else ""
    if len(text) != 6:
        raise invalid_field(field, "must be a colour as #RRGGBB")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise invalid_field(field, "must be a colour as #RRGGBB") from None
    return (raw[0], raw[1], raw[2])


def decode(data: bytes, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """Open `data`, returning the loaded first frame and its format ("png", "jpeg", ..., "tiff").

    Raises:
        GatewayError: INVALID_ARGUMENT on `field` for empty or undecodable bytes, a format that is not
            read, or more than `max_pixels` pixels (checked from the header, before decoding).
    """
    if not data:
        raise invalid_field(field, "the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = _READABLE.get(image.format or "")
            if fmt is None:
                raise invalid_field(
                    field, f"unsupported image format {image.format or 'unknown'}: use PNG, JPEG or WebP"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise invalid_field(
                    field, f"the image has {width}x{height} pixels, more than the limit of {max_pixels}"
                )
            image.seek(0)
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise invalid_field(
            field, "the data is not a readable image (PNG, JPEG, WebP, GIF, BMP or TIFF)"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise invalid_field(field, f"the image has more than the limit of {max_pixels} pixels") from None
    return image, fmt


def convert(data: bytes, options: ConvertOptions, max_pixels: int = DEFAULT_MAX_PIXELS) -> ConvertedImage:
    """ImageService.Convert on raw bytes; see the module docstring.

    Raises:
        GatewayError: INVALID_ARGUMENT on `image` (see `decode`), on `max_bytes` when no quality or
            size makes the output fit.
    """
    image, source_format = decode(data, "image", max_pixels)
    source_width, source_height = image.size
    fmt: OutputFormat = options.format or _OUTPUT.get(source_format, "png")
    if options.strip_metadata:
        image = _to_srgb(ImageOps.exif_transpose(image))
    image = _resize(image, options)
    lossy = fmt == "jpeg" or (fmt == "webp" and not options.lossless)
    quality = (options.quality or DEFAULT_QUALITY) if lossy else None
    encoded = _encode(image, fmt, quality, options, source=None if options.strip_metadata else data)
    if options.max_bytes is not None:
        image, encoded, quality = _fit_bytes(
            image, fmt, quality=quality, options=options, encoded=encoded, max_bytes=options.max_bytes
        )
    return ConvertedImage(
        data=encoded,
        mime_type=MIME_TYPES[fmt],
        width=image.width,
        height=image.height,
        quality=quality,
        source_width=source_width,
        source_height=source_height,
        source_bytes=len(data),
    )


def optimize_for_upload(
    data: bytes, limits: UploadLimits, field: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[bytes, str]:
    """`data` fitted to `limits`, with its MIME type; unchanged when it already fits.

    Images too large (side or bytes) or in a format the provider does not take are downscaled to
    `limits.max_side` and re-encoded metadata-free (PNG stays PNG when accepted — masks keep their
    alpha —, other formats become JPEG, or the first accepted format).

    Raises:
        GatewayError: INVALID_ARGUMENT on `field` (see `decode`), or when it cannot be made to fit.
    """
    image, fmt = decode(data, field, max_pixels)
    if fmt in limits.formats and max(image.size) <= limits.max_side and len(data) <= limits.max_bytes:
        return data, MIME_TYPES[fmt]
    kept = _OUTPUT.get(fmt)
    target: OutputFormat
    if kept is not None and kept in limits.formats and kept != "jpeg":
        target = kept
    else:
        target = "jpeg" if "jpeg" in limits.formats else limits.formats[0]
    options = ConvertOptions(
        format=target, width=limits.max_side, height=limits.max_side, max_bytes=limits.max_bytes
    )
    try:
        converted = convert(data, options, max_pixels)
    except Exception as exc:
        raise invalid_field(field, f"the image cannot be reduced to {limits.max_bytes} bytes") from exc
    return converted.data, converted.mime_type


# -- internals ------------------------------------------------------------------------------------


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (converting to sRGB), then drop every piece of metadata."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode=output_mode
            )
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError):
            pass
    elif image.mode == "CMYK":
        image = image.convert("RGB")
    clean = image.copy()
    clean.info = {k: v for k, v in image.info.items() if k in ("transparency",)}
    return clean


def _resize(image: Image.Image, options: ConvertOptions) -> Image.Image:
    width, height = options.width, options.height
    if width is None and height is None:
        return image
    src_w, src_h = image.size
    if width is None or height is None:
        scale = (width / src_w) if width is not None else (height or src_h) / src_h
        if scale > 1 and not options.allow_upscale:
            return image
        return image.resize(
            (max(1, round(src_w * scale)), max(1, round(src_h * scale))), Image.Resampling.LANCZOS
        )
    if options.fit == "fill":
        if (width > src_w or height > src_h) and not options.allow_upscale:
            width, height = min(width, src_w), min(height, src_h)
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if options.fit == "cover":
        scale = max(width / src_w, height / src_h)
        if scale > 1 and not options.allow_upscale:
            scale = 1.0
        box_w, box_h = min(width, round(src_w * scale)), min(height, round(src_h * scale))
        return ImageOps.fit(
            image.resize(
                (max(1, round(src_w * scale)), max(1, round(src_h * scale))), Image.Resampling.LANCZOS
            ),
            (box_w, box_h),
        )
    scale = min(width / src_w, height / src_h)
    if scale > 1 and not options.allow_upscale:
        scale = 1.0
    fitted = (
        image.resize((max(1, round(src_w * scale)), max(1, round(src_h * scale))), Image.Resampling.LANCZOS)
        if scale != 1.0
        else image
    )
    if options.fit != "pad":
        return fitted
    mode = "RGBA" if fitted.mode in ("RGBA", "LA", "P") else "RGB"
    canvas = Image.new(mode, (width, height), options.background + ((255,) if mode == "RGBA" else ()))
    canvas.paste(fitted.convert(mode), ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def _prepare(image: Image.Image, fmt: OutputFormat, background: tuple[int, int, int]) -> Image.Image:
    """`image` in a mode the encoder takes; transparency is flattened onto `background` for JPEG."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if fmt == "jpeg":
        if has_alpha:
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, background)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    if fmt == "webp":
        return image if image.mode in ("RGB", "RGBA") else image.convert("RGBA" if has_alpha else "RGB")
    return (
        image
        if image.mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16")
        else image.convert("RGBA" if has_alpha else "RGB")
    )


def _encode(
    image: Image.Image, fmt: OutputFormat, quality: int | None, options: ConvertOptions, source: bytes | None
) -> bytes:
    """Encode; with `source` (metadata kept), EXIF and ICC of the source are written back."""
    prepared = _prepare(image, fmt, options.background)
    params: dict[str, object] = {}
    if source is not None:
        exif = image.info.get("exif") or image.getexif().tobytes()
        if exif and fmt in ("jpeg", "webp", "png"):
            params["exif"] = exif
        if image.info.get("icc_profile"):
            params["icc_profile"] = image.info["icc_profile"]
    if fmt == "jpeg":
        params.update(quality=quality or DEFAULT_QUALITY, optimize=True)
    elif fmt == "webp":
        params.update(lossless=True) if options.lossless else params.update(
            quality=quality or DEFAULT_QUALITY
        )
    else:
        params.update(optimize=True)
    out = io.BytesIO()
    prepared.save(out, format=fmt.upper(), **params)
    return out.getvalue()


def _fit_bytes(
    image: Image.Image,
    fmt: OutputFormat,
    *,
    quality: int | None,
    options: ConvertOptions,
    encoded: bytes,
    max_bytes: int,
) -> tuple[Image.Image, bytes, int | None]:
    """Lower quality (lossy formats), then dimensions, until the encoding is at most `max_bytes`."""
    source = None if options.strip_metadata else b""
    while len(encoded) > max_bytes:
        if quality is not None and quality > _MIN_QUALITY:
            quality = max(_MIN_QUALITY, quality - 15)
        else:
            width, height = round(image.width * _SHRINK), round(image.height * _SHRINK)
            if width < 16 or height < 16:
                raise invalid_field("max_bytes", f"the image cannot be encoded in {max_bytes} bytes")
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        encoded = _encode(image, fmt, quality, options, source)
    return image, encoded, quality
