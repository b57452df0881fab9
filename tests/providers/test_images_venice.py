"""Venice images against the swagger-validated fake: /image/generate (JSON, base64 images) and
/image/edit (image bytes back); masks, several sources, too many images and variations refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, Reason
from homa_server.providers.base import CallContext, ImageProvider
from homa_server.providers.venice import VeniceProvider
from tests.providers.fakes._server import checked
from tests.providers.fakes.openai_images import png_bytes
from tests.providers.fakes.venice_images import FakeVeniceImages
from tests.providers.fakes.venice_upstream import venice_settings
from tests.providers.venice_spec import venice_api

MODEL = "venice-sd35"
PNG = png_bytes(16, 16)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeVeniceImages]:
    venice_api()
    fake = FakeVeniceImages().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(upstream: FakeVeniceImages) -> Iterator[FakeVeniceImages]:
    yield from checked(upstream, "Venice")


@pytest.fixture
async def provider(fake: FakeVeniceImages) -> AsyncIterator[VeniceProvider]:
    adapter = VeniceProvider("venice", venice_settings(fake.base_url))
    yield adapter
    await adapter.aclose()


async def test_is_an_image_provider(provider: VeniceProvider) -> None:
    assert isinstance(provider, ImageProvider)


async def test_generate(provider: VeniceProvider, fake: FakeVeniceImages) -> None:
    request = image_pb2.GenerateRequest(
        prompt="a tower",
        n=3,
        size="1024x768",
        negative_prompt="fog",
        seed=9,
        quality=image_pb2.IMAGE_QUALITY_HIGH,
    )
    response = await provider.generate_images(request, CallContext(model=MODEL))
    assert fake.requests[-1].body == {
        "model": MODEL,
        "prompt": "a tower",
        "format": "png",
        "return_binary": False,
        "variants": 3,
        "width": 1024,
        "height": 768,
        "negative_prompt": "fog",
        "seed": 9,
        "quality": "high",
    }
    assert response.id == "generate-image-1"
    assert [(i.index, i.mime_type) for i in response.images] == [
        (0, "image/png"),
        (1, "image/png"),
        (2, "image/png"),
    ]


async def test_edit_returns_the_image_bytes(provider: VeniceProvider, fake: FakeVeniceImages) -> None:
    source = content_pb2.InlineData(mime_type="image/png", data=PNG)
    response = await provider.edit_images(
        image_pb2.EditRequest(prompt="make it red"), [source], None, CallContext(model=MODEL)
    )
    assert response.images[0].mime_type == "image/png"
    assert response.images[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert fake.requests[-1].body["prompt"] == "make it red"


async def test_refusals_before_any_call(provider: VeniceProvider, fake: FakeVeniceImages) -> None:
    source = content_pb2.InlineData(mime_type="image/png", data=PNG)
    ctx = CallContext(model=MODEL)
    with pytest.raises(GatewayError) as info:
        await provider.generate_images(image_pb2.GenerateRequest(prompt="p", n=5), ctx)
    assert info.value.field_violations[0].field == "n"
    with pytest.raises(GatewayError) as info:
        await provider.edit_images(image_pb2.EditRequest(prompt="p"), [source], source, ctx)
    assert info.value.field_violations[0].field == "mask"
    with pytest.raises(GatewayError) as info:
        await provider.edit_images(image_pb2.EditRequest(prompt="p"), [source, source], None, ctx)
    assert info.value.field_violations[0].field == "images"
    with pytest.raises(GatewayError) as info:
        await provider.create_image_variation(image_pb2.CreateVariationRequest(), source, ctx)
    assert info.value.reason == Reason.CAPABILITY_NOT_SUPPORTED
    assert fake.requests == []
