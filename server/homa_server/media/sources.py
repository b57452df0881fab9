"""Turn an `ImageInput` (inline bytes or a URL) into inline bytes, fetching URLs through the SSRF guard.

Contract of `load_image(image, field, policy)`:

* `inline_data` is returned as is (a missing MIME type is sniffed from the bytes).
* `file_uri` with an `http`/`https` URL is fetched with `security.ssrf.fetch`: the host is resolved
  and every address checked (loopback, private, link-local, metadata, ... refused with the URL_*
  reasons), the connection is pinned to the checked address, redirects are not followed
  (URL_REDIRECT_NOT_FOLLOWED), the body is bounded by `policy.max_bytes` (URL_RESPONSE_TOO_LARGE)
  and the whole fetch by `policy.timeout_s` (URL_FETCH_TIMEOUT). Any other scheme (including
  provider file URIs such as gs://) is refused with URL_SCHEME_NOT_ALLOWED. A non-2xx answer is
  INVALID_ARGUMENT on `field`.
* The MIME type of fetched bytes is sniffed from the bytes (the server's Content-Type is not trusted);
  bytes that are not PNG, JPEG, WebP or GIF are INVALID_ARGUMENT on `field`.
"""

from __future__ import annotations

from dataclasses import dataclass

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.security.ssrf import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, Allowlist, Resolver, fetch

__all__ = ["FetchPolicy", "load_image", "sniff_mime"]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How image URLs are fetched: size and time bounds, and the SSRF guard's exemptions.

    `resolver` replaces DNS (tests inject one); `allow_private` and `allowlist` come from settings only.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_private: bool = False
    allowlist: Allowlist | None = None
    resolver: Resolver | None = None


def sniff_mime(data: bytes) -> str:
    """The image MIME type from magic bytes: image/png, image/jpeg, image/webp, image/gif, or ""."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return ""


async def load_image(image: image_pb2.ImageInput, field: str, policy: FetchPolicy) -> content_pb2.InlineData:
    """The image's bytes; see the module docstring for the contract.

    Raises:
        GatewayError: INVALID_ARGUMENT on `field`; the SSRF guard's `OutboundUrlError`s for URLs.
    """
    source = image.WhichOneof("source")
    if source == "inline_data":
        inline = image.inline_data
        if inline.mime_type:
            return inline
        return content_pb2.InlineData(
            mime_type=sniff_mime(inline.data), data=inline.data, detail=inline.detail
        )
    if source != "file_uri":
        raise invalid_field(field, "set inline_data or file_uri")
    response = await fetch(
        image.file_uri.uri,
        headers={"Accept": "image/png, image/jpeg, image/webp, image/gif"},
        allow_private=policy.allow_private,
        allowlist=policy.allowlist,
        resolver=policy.resolver,
        max_bytes=policy.max_bytes,
        timeout_s=policy.timeout_s,
    )
    if not 200 <= response.status < 300:
        raise invalid_field(f"{field}.file_uri.uri", f"the image URL answered HTTP {response.status}")
    mime = sniff_mime(response.body)
    if not mime:
        raise invalid_field(f"{field}.file_uri.uri", "the URL did not return a PNG, JPEG, WebP or GIF image")
    return content_pb2.InlineData(mime_type=mime, data=response.body, detail=image.file_uri.detail)
