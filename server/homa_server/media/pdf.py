"""Text of PDF documents, offline: the text layer with pypdf, OCR for pages without one.

Used for chat document parts sent to providers that cannot read PDFs themselves. Pages with a text
layer give their text; a page with no text but images (a scan) is read with `media.ocr` when the
`local-ocr` extra is installed and `ocr` is true. Blocking (OCR takes about a second per page): call
it from a worker thread.
"""

from __future__ import annotations

import io
import logging

from pypdf import PageObject, PdfReader
from pypdf.errors import PyPdfError

from homa_server.errors import GatewayError, Reason, invalid_field
from homa_server.media.ocr import missing_ocr_extra, ocr_available, ocr_image

__all__ = ["MAX_PAGES", "extract_pdf_text"]

MAX_PAGES = 2000
_log = logging.getLogger(__name__)


def extract_pdf_text(data: bytes, ocr: bool = True) -> str:
    """The text of every page, pages separated by a blank line (pages with no text are skipped).

    Unencrypted PDFs and PDFs encrypted with an empty user password are read; OCR applies only to
    pages whose text layer is empty. With `ocr` true and the extra missing, pages that would need
    OCR are skipped, unless no page has text at all.

    Raises:
        GatewayError: INVALID_ARGUMENT (field `document`) for data that is not a readable PDF, a
            password-protected PDF or one with more than `MAX_PAGES` pages;
            FAILED_PRECONDITION / EXTRA_NOT_INSTALLED when the document has no text layer,
            `ocr` is true and the `local-ocr` extra is not installed.
    """
    reader = _open(data)
    texts: list[str] = []
    scanned = 0
    try:
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            if not text and ocr:
                if not ocr_available():
                    scanned += 1
                    continue
                text = _ocr_page(page).strip()
            if text:
                texts.append(text)
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise invalid_field("document", "the PDF could not be read") from exc
    if scanned and not texts:
        raise missing_ocr_extra()
    return "\n\n".join(texts)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise invalid_field("document", "the PDF is password-protected")
        pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise invalid_field("document", "the data is not a readable PDF") from exc
    if pages > MAX_PAGES:
        raise invalid_field("document", f"the PDF has more than {MAX_PAGES} pages")
    return reader


def _ocr_page(page: PageObject) -> str:
    parts: list[str] = []
    for image in page.images:
        try:
            text = ocr_image(image.data)
        except GatewayError as exc:
            if exc.reason is Reason.EXTRA_NOT_INSTALLED:
                raise
            _log.info("skipping an undecodable image in a PDF page: %s", exc.message)
            continue
        if text:
            parts.append(text)
    return "\n".join(parts)
