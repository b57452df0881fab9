"""Image inputs by URL pass the SSRF guard (media/sources.py): internal destinations are refused with
the URL_* reasons before any connection, and allowed fetches are pinned, bounded and never redirected.
Also the dispatcher's pixel limit on inputs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.media.sources import FetchPolicy, load_image, sniff_mime
from homa_server.security.ssrf import Allowlist
from tests.providers.fakes.openai_images import png_bytes

PNG = png_bytes(16, 16)


def url_input(url: str) -> image_pb2.ImageInput:
    return image_pb2.ImageInput(file_uri=content_pb2.FileUri(uri=url))


def resolver_to(*addresses: str) -> object:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("url", "code", "reason"),
    [
        ("http://127.0.0.1/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("http://[::1]/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("http://10.1.2.3/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("http://192.168.0.10/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        (
            "http://169.254.169.254/latest/meta-data/",
            Code.PERMISSION_DENIED,
            Reason.URL_DESTINATION_FORBIDDEN,
        ),
        ("http://0x7f000001/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("http://localhost/cat.png", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("http://metadata.google.internal/x", Code.PERMISSION_DENIED, Reason.URL_DESTINATION_FORBIDDEN),
        ("file:///etc/passwd", Code.INVALID_ARGUMENT, Reason.URL_SCHEME_NOT_ALLOWED),
        ("gs://bucket/cat.png", Code.INVALID_ARGUMENT, Reason.URL_SCHEME_NOT_ALLOWED),
        ("http://user:pw@example.com/cat.png", Code.INVALID_ARGUMENT, Reason.URL_INVALID),
    ],
)
async def test_internal_and_odd_urls_are_refused(url: str, code: Code, reason: Reason) -> None:
    resolver = resolver_to("93.184.216.34")
    with pytest.raises(GatewayError) as info:
        await load_image(url_input(url), "images[0]", FetchPolicy(resolver=resolver))  # type: ignore[arg-type]
    assert (info.value.code, info.value.reason) == (code, reason)
    assert "meta-data" not in info.value.message  # never echoes the path


async def test_public_looking_name_resolving_to_loopback_is_refused() -> None:
    resolver = resolver_to("127.0.0.1")
    with pytest.raises(GatewayError) as info:
        await load_image(
            url_input("https://images.example.com/cat.png"),
            "images[0]",
            FetchPolicy(resolver=resolver),  # type: ignore[arg-type]
        )
    assert info.value.reason == Reason.URL_DESTINATION_FORBIDDEN
    assert resolver.calls == ["images.example.com"]  # type: ignore[attr-defined]
    assert "127.0.0.1" not in info.value.message


async def test_one_private_address_among_public_ones_is_refused() -> None:
    resolver = resolver_to("93.184.216.34", "10.0.0.7")
    with pytest.raises(GatewayError) as info:
        await load_image(url_input("https://cdn.example.com/a.png"), "image", FetchPolicy(resolver=resolver))  # type: ignore[arg-type]
    assert info.value.reason == Reason.URL_DESTINATION_FORBIDDEN


@pytest.fixture
async def image_host() -> AsyncIterator[int]:
    """A local HTTP server: /cat.png (PNG), /moved (302), /big (too large), /text (not an image)."""

    async def cat(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="application/octet-stream")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"0" * 5000, content_type="image/png")

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="hello", content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", cat)
    app.router.add_get("/moved", moved)
    app.router.add_get("/big", big)
    app.router.add_get("/text", text)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


def allowed(max_bytes: int = 1 << 20) -> FetchPolicy:
    """Only the loopback test host is exempted, by network allow-list (as settings would)."""
    return FetchPolicy(
        allowlist=Allowlist.from_entries(["127.0.0.1/32"]),
        resolver=resolver_to("127.0.0.1"),  # type: ignore[arg-type]
        max_bytes=max_bytes,
        timeout_s=5.0,
    )


async def test_allowed_fetch_returns_bytes_with_a_sniffed_type(image_host: int) -> None:
    data = await load_image(url_input(f"http://images.test:{image_host}/cat.png"), "image", allowed())
    assert (data.data, data.mime_type) == (PNG, "image/png")


async def test_redirects_are_not_followed(image_host: int) -> None:
    with pytest.raises(GatewayError) as info:
        await load_image(url_input(f"http://images.test:{image_host}/moved"), "image", allowed())
    assert info.value.reason == Reason.URL_REDIRECT_NOT_FOLLOWED


async def test_body_size_is_bounded(image_host: int) -> None:
    with pytest.raises(GatewayError) as info:
        await load_image(url_input(f"http://images.test:{image_host}/big"), "image", allowed(max_bytes=1000))
    assert info.value.reason == Reason.URL_RESPONSE_TOO_LARGE


async def test_non_image_bodies_are_invalid_argument(image_host: int) -> None:
    with pytest.raises(GatewayError) as info:
        await load_image(url_input(f"http://images.test:{image_host}/text"), "images[2]", allowed())
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.field_violations[0].field == "images[2].file_uri.uri"


def test_sniff_mime() -> None:
    assert sniff_mime(PNG) == "image/png"
    assert sniff_mime(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"GIF89a...") == "image/gif"
    assert sniff_mime(b"hello") == ""
