"""homa media parts -> Converse content blocks (image, document, video, audio).

- Inline bytes are sent base64-encoded in `source.bytes` (the JSON form of the model's blobs).
- URIs: Bedrock reads only Amazon S3 (`source.s3Location.uri`, `s3://bucket/key`); it cannot
  fetch http(s) URLs, so those are INVALID_ARGUMENT ("send the bytes inline").
- The block kind and `format` come from the MIME type (parameters such as `; charset=` are
  ignored); for an S3 URI without a MIME type, from the object key's extension.
- Documents need a `name` made only of letters, digits, single spaces, hyphens, parentheses and
  square brackets: the title is cleaned into that alphabet (or "document" is used) and made
  unique within the request, because Bedrock rejects two documents with the same name.
- Image `detail` has no Bedrock equivalent and is ignored (it is a hint, not a constraint).
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from typing import Any

from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, invalid_field

__all__ = ["DocumentNames", "base64_text", "document_block", "file_uri_block", "inline_block"]

IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
}
VIDEO_FORMATS = {
    "video/x-matroska": "mkv",
    "video/quicktime": "mov",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/x-flv": "flv",
    "video/mpeg": "mpeg",
    "video/x-ms-wmv": "wmv",
    "video/3gpp": "three_gp",
}
AUDIO_FORMATS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/opus": "opus",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/aac": "aac",
    "audio/x-aac": "x-aac",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/mp4": "mp4",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/pcm": "pcm",
}
# (block kind, format table) in lookup order.
_KINDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("image", IMAGE_FORMATS),
    ("document", DOCUMENT_FORMATS),
    ("video", VIDEO_FORMATS),
    ("audio", AUDIO_FORMATS),
)

# Bedrock's S3Uri pattern and length limit.
_S3_URI = re.compile(r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?", re.DOTALL)
_S3_URI_MAX = 1024
_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_WHITESPACE = re.compile(r"\s+")
_NAME_MAX = 200
_DEFAULT_NAME = "document"


def base64_text(data: bytes) -> str:
    """Standard base64 without line breaks (the JSON encoding of Bedrock blobs)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class DocumentNames:
    """Hands out valid, unique document names for one request."""

    __slots__ = ("_used",)

    def __init__(self) -> None:
        self._used: set[str] = set()

    def name(self, title: str) -> str:
        """A Bedrock document name derived from `title` (cleaned, de-duplicated)."""
        cleaned = _WHITESPACE.sub(" ", _NAME_DISALLOWED.sub(" ", title)).strip()[:_NAME_MAX].strip()
        base = cleaned or _DEFAULT_NAME
        candidate = base
        counter = 2
        while candidate in self._used:
            suffix = f" ({counter})"
            candidate = base[: _NAME_MAX - len(suffix)].rstrip() + suffix
            counter += 1
        self._used.add(candidate)
        return candidate


def _media_type(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


def _kind_and_format(mime_type: str) -> tuple[str, str] | None:
    for kind, table in _KINDS:
        fmt = table.get(mime_type)
        if fmt is not None:
            return kind, fmt
    return None


def _unsupported(path: str, mime_type: str) -> GatewayError:
    shown = mime_type or "(empty)"
    return invalid_field(
        path,
        f"Bedrock cannot take media of type {shown}; it takes PNG/JPEG/GIF/WebP images, "
        "PDF/CSV/DOC(X)/XLS(X)/HTML/TXT/MD documents, and common video and audio formats",
    )


def _block(
    kind: str, fmt: str, source: dict[str, Any], names: DocumentNames, title: str = ""
) -> dict[str, Any]:
    if kind == "document":
        return {"document": {"format": fmt, "name": names.name(title), "source": source}}
    return {kind: {"format": fmt, "source": source}}


def inline_block(data: content_pb2.InlineData, path: str, names: DocumentNames) -> dict[str, Any]:
    """An `InlineData` part as an image, document, video or audio block.

    Raises:
        GatewayError: INVALID_ARGUMENT for empty data or an unsupported MIME type.
    """
    mime = _media_type(data.mime_type)
    found = _kind_and_format(mime)
    if found is None:
        raise _unsupported(f"{path}.mime_type", data.mime_type)
    if not data.data:
        raise invalid_field(f"{path}.data", "inline data is empty")
    kind, fmt = found
    return _block(kind, fmt, {"bytes": base64_text(data.data)}, names)


def file_uri_block(file: content_pb2.FileUri, path: str, names: DocumentNames) -> dict[str, Any]:
    """A `FileUri` part (an `s3://` URI) as a block with an `s3Location` source.

    Raises:
        GatewayError: INVALID_ARGUMENT for non-S3 URIs or an unknown media type.
    """
    uri = file.uri
    _check_s3_uri(uri, f"{path}.uri")
    mime = _media_type(file.mime_type) if file.mime_type else _guess(uri)
    found = _kind_and_format(mime)
    if found is None:
        raise _unsupported(f"{path}.mime_type", file.mime_type or mime)
    kind, fmt = found
    return _block(kind, fmt, {"s3Location": {"uri": uri}}, names, _key_name(uri))


def document_block(doc: content_pb2.Document, path: str, names: DocumentNames) -> dict[str, Any]:
    """A `Document` part as a document block (bytes, or an S3 URI).

    Raises:
        GatewayError: INVALID_ARGUMENT for an unsupported MIME type, a missing source or a
            non-S3 URI.
    """
    mime = _media_type(doc.mime_type) if doc.mime_type else (_guess(doc.uri) if doc.uri else "")
    fmt = DOCUMENT_FORMATS.get(mime)
    if fmt is None:
        raise invalid_field(
            f"{path}.mime_type",
            f"Bedrock cannot take documents of type {doc.mime_type or '(empty)'}; "
            "it takes PDF, CSV, DOC, DOCX, XLS, XLSX, HTML, TXT and MD",
        )
    if doc.data:
        source: dict[str, Any] = {"bytes": base64_text(doc.data)}
    elif doc.uri:
        _check_s3_uri(doc.uri, f"{path}.uri")
        source = {"s3Location": {"uri": doc.uri}}
    else:
        raise invalid_field(path, "a document needs `data` or an s3:// `uri`")
    return {"document": {"format": fmt, "name": names.name(doc.title), "source": source}}


def _check_s3_uri(uri: str, path: str) -> None:
    if not uri:
        raise invalid_field(path, "the URI is empty")
    if not uri.startswith("s3://"):
        raise invalid_field(path, "Bedrock reads only s3:// URIs; send other content inline as bytes")
    if len(uri) > _S3_URI_MAX or not _S3_URI.fullmatch(uri):
        raise invalid_field(path, "not a valid s3://bucket/key URI")


def _guess(uri: str) -> str:
    guessed, _ = mimetypes.guess_type(uri, strict=False)
    return (guessed or "").lower()


def _key_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]
