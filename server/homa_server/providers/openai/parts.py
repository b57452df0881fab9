"""Media helpers shared by the Chat Completions and Responses-format builders.

They encode homa media parts the way every OpenAI API expects them (base64 `data:` URLs, detail
strings, audio formats) and raise `invalid_field` with the caller's field path when a value cannot
be expressed.
"""

from __future__ import annotations

import binascii

from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, invalid_field

__all__ = [
    "AUDIO_FORMATS",
    "DETAIL",
    "OPENAI_FILE_PREFIX",
    "PDF",
    "base64_text",
    "data_url",
    "decode_text",
    "is_fetchable_url",
    "is_text_mime",
    "pdf_filename",
    "unsupported_mime",
]

PDF = "application/pdf"
# OpenAI Files API ids look like "file-AbC123"; anything else in a FileUri is a URL.
OPENAI_FILE_PREFIX = "file-"

DETAIL: dict[int, str] = {
    content_pb2.IMAGE_DETAIL_AUTO: "auto",
    content_pb2.IMAGE_DETAIL_LOW: "low",
    content_pb2.IMAGE_DETAIL_HIGH: "high",
}

# Chat Completions `input_audio.format` accepts exactly "wav" and "mp3".
AUDIO_FORMATS: dict[str, str] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
}

# Non-"text/*" types whose bytes are plain UTF-8 text and can be inlined as text.
_TEXTUAL = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml"})


def base64_text(data: bytes) -> str:
    """Standard base64 without line breaks."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def data_url(mime_type: str, data: bytes) -> str:
    """`data:<mime>;base64,<data>` (no line breaks)."""
    return f"data:{mime_type};base64,{base64_text(data)}"


def is_text_mime(mime_type: str) -> bool:
    """True for media types that are plain text and can be sent as a text part."""
    return mime_type.startswith("text/") or mime_type in _TEXTUAL


def is_fetchable_url(uri: str) -> bool:
    """True for URLs OpenAI fetches itself (http, https) or reads inline (data:)."""
    return uri.startswith(("https://", "http://", "data:"))


def decode_text(data: bytes, path: str) -> str:
    """Decode a text document.

    Raises:
        GatewayError: INVALID_ARGUMENT at `path` when `data` is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(path, "text content must be UTF-8") from None


def pdf_filename(title: str) -> str:
    """The file name OpenAI shows the model for an inline PDF (it requires one)."""
    return title or "document.pdf"


def unsupported_mime(path: str, mime_type: str, what: str) -> GatewayError:
    """INVALID_ARGUMENT for a media type OpenAI cannot take in this position."""
    shown = mime_type or "(empty)"
    return invalid_field(path, f"OpenAI cannot take {what} of type {shown}")
