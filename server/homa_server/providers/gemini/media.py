"""homa media parts -> Gemini `inlineData` / `fileData` parts, and base64 helpers.

Gemini reads images, audio, video, PDFs and plain-text documents natively, inline (base64 `data`,
up to the request size limit) or by URI (`fileData.fileUri`: Files API URIs, YouTube links and,
on newer models, public URLs). The MIME type travels with every part. Vision `detail` hints have no
per-part equivalent in the Gemini API and are not sent (Gemini sizes images itself).
Document titles are not sent either: `Blob` and `FileData` have no name field.
"""

from __future__ import annotations

import binascii
from typing import Any

from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field

__all__ = ["b64", "document_part", "file_uri_part", "inline_data_part", "unb64"]

_MEDIA_PREFIXES = ("image/", "audio/", "video/", "text/")
PDF = "application/pdf"
# Document types Gemini's document understanding takes besides PDF and text/* (code and markup).
_DOCUMENT_TYPES = frozenset(
    {
        PDF,
        "application/json",
        "application/xml",
        "application/rtf",
        "application/x-javascript",
        "application/x-python",
        "application/x-typescript",
    }
)


def b64(data: bytes) -> str:
    """Standard base64 without line breaks (proto3 JSON `bytes`)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode proto3 JSON `bytes`: standard or URL-safe base64, padding optional.

    Raises:
        ValueError: `text` is not base64.
    """
    cleaned = text.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc


def _is_media(mime: str) -> bool:
    return mime.startswith(_MEDIA_PREFIXES) or mime in _DOCUMENT_TYPES


def inline_data_part(data: content_pb2.InlineData, path: str) -> dict[str, Any]:
    """`{"inlineData": {mimeType, data}}` for an image, audio, video, PDF or text blob.

    Raises:
        GatewayError: INVALID_ARGUMENT at `path.mime_type` / `path.data`.
    """
    mime = data.mime_type
    if not _is_media(mime):
        raise invalid_field(
            f"{path}.mime_type", f"Gemini cannot take inline data of type {mime or '(empty)'}"
        )
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    return {"inlineData": {"mimeType": mime, "data": b64(data.data)}}


def file_uri_part(file: content_pb2.FileUri, path: str) -> dict[str, Any]:
    """`{"fileData": {mimeType?, fileUri}}`.

    Raises:
        GatewayError: INVALID_ARGUMENT at `path.uri` for an empty URI.
    """
    if not file.uri:
        raise invalid_field(f"{path}.uri", "the URI is empty")
    file_data = {"fileUri": file.uri}
    if file.mime_type:
        file_data["mimeType"] = file.mime_type
    return {"fileData": file_data}


def document_part(doc: content_pb2.Document, path: str) -> dict[str, Any]:
    """A document (PDF, text, code) as `inlineData` (bytes) or `fileData` (URI).

    Raises:
        GatewayError: INVALID_ARGUMENT at `path.mime_type` or `path` for what Gemini cannot read.
    """
    mime = doc.mime_type
    if not mime:
        raise invalid_field(f"{path}.mime_type", "a document needs its MIME type")
    if not (mime in _DOCUMENT_TYPES or mime.startswith("text/")):
        raise invalid_field(
            f"{path}.mime_type", f"Gemini reads PDF and text documents, not {mime}; send other media inline"
        )
    if doc.data:
        return {"inlineData": {"mimeType": mime, "data": b64(doc.data)}}
    if doc.uri:
        return {"fileData": {"mimeType": mime, "fileUri": doc.uri}}
    raise invalid_field(path, "a document needs `data` or `uri`")
