"""Offline documents: PDF text layers with pypdf, OCR of rendered text and of scanned PDF pages."""

from __future__ import annotations

import io
import re
import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from homa_server.errors import Code, GatewayError, Reason
from homa_server.media.ocr import ocr_image
from homa_server.media.pdf import extract_pdf_text


def _squash(text: str) -> str:
    """Lower-case letters and digits only: OCR may drop or add spaces and punctuation."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _text_pdf(pages: list[str]) -> bytes:
    """A minimal PDF whose pages each show one line of Helvetica text (a real text layer)."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _rendered(lines: list[str], fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", (900, 110 * len(lines) + 40), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for row, line in enumerate(lines):
        draw.text((30, 30 + 110 * row), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_pdf_text_layer_is_extracted_page_by_page() -> None:
    text = extract_pdf_text(_text_pdf(["Quarterly report for Homa", "Revenue grew 12 percent"]))

    assert text == "Quarterly report for Homa\n\nRevenue grew 12 percent"


def test_rendered_text_in_an_image_is_read_line_by_line() -> None:
    text = ocr_image(_rendered(["Invoice number 4417", "Total due 250 EUR"]))

    lines = text.splitlines()
    assert [_squash(line) for line in lines] == ["invoicenumber4417", "totaldue250eur"]


def test_blank_image_has_no_text() -> None:
    assert ocr_image(_rendered([])) == ""


def test_scanned_pdf_page_goes_through_ocr() -> None:
    scan = _rendered(["Shipping address 12 Main Street"], "PDF")

    assert _squash(extract_pdf_text(scan)) == "shippingaddress12mainstreet"
    assert extract_pdf_text(scan, ocr=False) == ""


def test_scanned_pdf_without_the_ocr_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # `import` raises ImportError
    scan = _rendered(["Nothing to read here"], "PDF")

    with pytest.raises(GatewayError) as caught:
        extract_pdf_text(scan)
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert caught.value.reason is Reason.EXTRA_NOT_INSTALLED
    assert caught.value.metadata == {"package": "rapidocr-onnxruntime", "extra": "local-ocr"}
    assert "homa[local-ocr]" in caught.value.message
    with pytest.raises(GatewayError) as direct:
        ocr_image(_rendered(["x"]))
    assert direct.value.reason is Reason.EXTRA_NOT_INSTALLED


def test_text_pages_still_extracted_without_the_ocr_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)

    assert extract_pdf_text(_text_pdf(["Plain text page"])) == "Plain text page"


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4\ngarbage", b"not a pdf at all"])
def test_unreadable_pdf_is_invalid_argument(data: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        extract_pdf_text(data)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["document"]


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\nbroken"])
def test_undecodable_image_is_invalid_argument(data: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        ocr_image(data)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["image"]
