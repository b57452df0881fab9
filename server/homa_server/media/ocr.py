"""Text in images, offline: RapidOCR (PaddleOCR models on ONNX Runtime).

Needs the optional extra `local-ocr` (`pip install 'homa[local-ocr]'`: rapidocr-onnxruntime, which
ships its models, plus OpenCV and Pillow). The engine is built lazily, once per process; nothing is
downloaded. `ocr_image` blocks (hundreds of milliseconds per page-sized image): call it from a worker
thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import threading
from typing import Any

import numpy as np

from homa_server.errors import Code, GatewayError, Reason, invalid_field

__all__ = ["EXTRA", "MAX_PIXELS", "missing_ocr_extra", "ocr_available", "ocr_image"]

EXTRA = "local-ocr"
MAX_PIXELS = 40_000_000
_PACKAGE = "rapidocr-onnxruntime"
_lock = threading.Lock()
_engine: list[Any] = []


def ocr_available() -> bool:
    """Whether the `local-ocr` extra is importable (does not build the engine)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def ocr_image(data: bytes) -> str:
    """The text recognised in the encoded image `data` (PNG, JPEG, WebP, GIF, BMP, TIFF...): one
    line per visual line of text, top to bottom, words left to right; "" when there is none.

    Raises:
        GatewayError: FAILED_PRECONDITION / EXTRA_NOT_INSTALLED without the `local-ocr` extra;
            INVALID_ARGUMENT (field `image`) for data that is not a decodable image or that has
            more than `MAX_PIXELS` pixels.
    """
    engine = _load()
    pixels = _decode(data)
    with _lock:  # one recognition at a time: the engine keeps per-call state on itself
        result, _ = engine(pixels)
    return _lines(result or [])


def _load() -> Any:
    try:
        module = importlib.import_module("rapidocr_onnxruntime")
    except ImportError as exc:
        raise missing_ocr_extra() from exc
    with _lock:
        if not _engine:
            _engine.append(module.RapidOCR())
        return _engine[0]


def _decode(data: bytes) -> np.ndarray[Any, Any]:
    """BGR uint8 pixels, as OpenCV (and so RapidOCR) expects."""
    try:
        image_module = importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise missing_ocr_extra("Pillow") from exc
    try:
        with image_module.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise invalid_field("image", f"the image has more than {MAX_PIXELS} pixels")
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise invalid_field("image", "the data is not a decodable image") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _lines(result: list[Any]) -> str:
    """Join recognised boxes into lines: boxes whose vertical centres lie within half a box height
    of the line's first box belong to the same line."""
    boxes = []
    for box, text, _score in result:
        ys = [point[1] for point in box]
        xs = [point[0] for point in box]
        boxes.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(xs), str(text)))
    boxes.sort()
    lines: list[list[tuple[float, str]]] = []
    anchor = (float("-inf"), 0.0)
    for centre, height, left, text in boxes:
        if lines and abs(centre - anchor[0]) <= max(anchor[1], height) / 2:
            lines[-1].append((left, text))
        else:
            lines.append([(left, text)])
            anchor = (centre, height)
    return "\n".join(" ".join(text for _, text in sorted(line)) for line in lines)


def missing_ocr_extra(package: str = _PACKAGE) -> GatewayError:
    """FAILED_PRECONDITION / EXTRA_NOT_INSTALLED naming the `local-ocr` extra (and `package`)."""
    return GatewayError(
        f"{package} is unavailable (the package is not installed); install the extra with "
        f"`pip install 'homa[{EXTRA}]'` (see docs/local-provider.md)",
        Code.FAILED_PRECONDITION,
        Reason.EXTRA_NOT_INSTALLED,
        metadata={"package": package, "extra": EXTRA},
    )
