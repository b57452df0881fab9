"""Azure OpenAI images against the spec-validated fake: generation on deployment URLs (no `model` in
the body), edits as multipart on a preview api-version, streaming served whole, no variations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.base import CallContext, ImageProvider
from tests.providers.fakes._server import checked
from tests.providers.fakes.azure_images import FakeAzureImages
from tests.providers.fakes.azure_upstream import azure_settings
from tests.providers.fakes.openai_images import parse_multipart, png_bytes

PREVIEW = "2025-04-01-preview"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAzureImages]:
    fake = FakeAzureImages().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(upstream: FakeAzureImages) -> Iterator[FakeAzureImages]:
    yield from checked(upstream, "Azure OpenAI")


@pytest.fixture
async def provider(fake: FakeAzureImages) -> AsyncIterator[AzureOpenAIProvider]:
    settings = azure_settings(fake.base_url, api_version=PREVIEW, deployments={"gpt-image-1": "img-prod"})
    provider = AzureOpenAIProvider("azure", settings)
    yield provider
    await provider.aclose()


async def test_is_an_image_provider(provider: AzureOpenAIProvider) -> None:
    assert isinstance(provider, ImageProvider)


async def test_generate_on_the_deployment_url(provider: AzureOpenAIProvider, fake: FakeAzureImages) -> None:
    request = image_pb2.GenerateRequest(
        prompt="a red boat", n=2, size="1024x1024", quality=image_pb2.IMAGE_QUALITY_HIGH
    )
    response = await provider.generate_images(request, CallContext(model="gpt-image-1"))
    recorded = fake.requests[-1]
    assert recorded.deployment == "img-prod"
    assert recorded.query == {"api-version": PREVIEW}
    assert fake.last_form == {"prompt": "a red boat", "n": 2, "size": "1024x1024", "quality": "high"}
    assert len(response.images) == 2
    assert response.images[0].revised_prompt == "a revised prompt"


async def test_stream_is_served_whole(provider: AzureOpenAIProvider, fake: FakeAzureImages) -> None:
    request = image_pb2.StreamGenerateRequest(prompt="p", n=1, partial_images=2)
    events = [e async for e in provider.stream_generate_images(request, CallContext(model="gpt-image-1"))]
    assert [e.WhichOneof("event") for e in events] == ["image", "usage"]
    assert "stream" not in fake.last_form
    assert "partial_images" not in fake.last_form


async def test_edit_is_multipart_with_mask(provider: AzureOpenAIProvider, fake: FakeAzureImages) -> None:
    image = content_pb2.InlineData(mime_type="image/png", data=png_bytes(16, 16))
    mask = content_pb2.InlineData(mime_type="image/png", data=png_bytes(16, 16, (0, 0, 0, 0)))
    request = image_pb2.EditRequest(prompt="add a sail", n=1)
    response = await provider.edit_images(request, [image], mask, CallContext(model="gpt-image-1"))
    assert len(response.images) == 1
    parts = parse_multipart(fake.requests[-1].raw, fake.requests[-1].headers["content-type"])
    assert [p.name for p in parts] == ["image", "mask", "prompt", "n"]
    assert fake.last_form == {"image": "<binary>", "mask": "<binary>", "prompt": "add a sail", "n": 1}


async def test_no_variations(provider: AzureOpenAIProvider) -> None:
    with pytest.raises(GatewayError) as info:
        await provider.create_image_variation(
            image_pb2.CreateVariationRequest(),
            content_pb2.InlineData(data=b"x"),
            CallContext(model="dall-e-2"),
        )
    assert (info.value.code, info.value.reason) == (Code.FAILED_PRECONDITION, Reason.CAPABILITY_NOT_SUPPORTED)
