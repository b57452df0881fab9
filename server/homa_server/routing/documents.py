"""PDF document parts for providers that cannot read PDFs: replaced by their extracted text.

Contract of `for_provider(request, kind)`:
    * Providers whose chat APIs take PDF input natively (`PDF_NATIVE`, as in the capability matrix
      of docs/providers.md: OpenAI, Anthropic, Gemini, Bedrock, Venice) get the request unchanged,
      and so does any request without an inline PDF. Azure OpenAI (no file input on Chat
      Completions), OpenAI-compatible servers, Cohere, Ollama and the mock get the text.
    * For every other provider kind, each inline `application/pdf` document part becomes a
      `text/plain` document holding the text extracted by `media/pdf.py` (text layer, OCR for
      scanned pages when the `local-ocr` extra is installed), title kept. The caller's request is
      not modified: a copy is returned. Extraction runs in a worker thread.
    * Errors are those of `extract_pdf_text` (INVALID_ARGUMENT for unreadable PDFs,
      FAILED_PRECONDITION / EXTRA_NOT_INSTALLED for a scanned PDF without the OCR extra).
"""

from __future__ import annotations

import asyncio
from typing import Final

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.media.pdf import extract_pdf_text

PDF: Final = "application/pdf"
#: Provider kinds whose chat APIs read PDF documents themselves.
PDF_NATIVE: Final = frozenset({"openai", "anthropic", "gemini", "bedrock", "venice"})


def _has_inline_pdf(request: chat_pb2.CompleteRequest) -> bool:
    return any(
        part.WhichOneof("kind") == "document"
        and part.document.mime_type.lower() == PDF
        and bool(part.document.data)
        for message in request.messages
        for part in message.parts
    )


async def for_provider(request: chat_pb2.CompleteRequest, kind: str) -> chat_pb2.CompleteRequest:
    """`request` as provider kind `kind` can take it (see the module docstring)."""
    if kind in PDF_NATIVE or not _has_inline_pdf(request):
        return request
    converted = chat_pb2.CompleteRequest()
    converted.CopyFrom(request)
    for message in converted.messages:
        for part in message.parts:
            if part.WhichOneof("kind") != "document":
                continue
            document = part.document
            if document.mime_type.lower() != PDF or not document.data:
                continue
            text = await asyncio.to_thread(extract_pdf_text, document.data)
            document.mime_type = "text/plain"
            document.data = text.encode("utf-8")
    return converted
