"""Bedrock image models (Titan Image Generator / Nova Canvas, Stability) through SigV4-signed
InvokeModel calls against the fake, with bodies checked against AWS's model parameters."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import GatewayError, Reason
from homa_server.providers.base import CallContext, ImageProvider
from homa_server.providers.bedrock import BedrockProvider
from tests.providers.fakes._server import json_reply
from tests.providers.fakes.bedrock_images import FakeBedrockImages
from tests.providers.fakes.bedrock_upstream import bedrock_settings, checked_fake
from tests.providers.fakes.openai_images import png_bytes

TITAN = "amazon.titan-image-generator-v2:0"
STABILITY = "stability.sd3-5-large-v1:0"
PNG = png_bytes(64, 64)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeBedrockImages]:
    fake = FakeBedrockImages().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(upstream: FakeBedrockImages) -> Iterator[FakeBedrockImages]:
    yield from checked_fake(upstream)  # type: ignore[misc]


@pytest.fixture
async def provider(fake: FakeBedrockImages) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


def inline(data: bytes = PNG) -> content_pb2.InlineData:
    return content_pb2.InlineData(mime_type="image/png", data=data)


async def test_is_an_image_provider(provider: BedrockProvider) -> None:
    assert isinstance(provider, ImageProvider)


async def test_titan_text_to_image(provider: BedrockProvider, fake: FakeBedrockImages) -> None:
    request = image_pb2.GenerateRequest(
        prompt="a fox",
        negative_prompt="rain",
        n=2,
        size="1024x768",
        quality=image_pb2.IMAGE_QUALITY_HIGH,
        seed=5,
    )
    response = await provider.generate_images(request, CallContext(model=TITAN))
    assert fake.requests[-1].body == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a fox", "negativeText": "rain"},
        "imageGenerationConfig": {
            "numberOfImages": 2,
            "width": 1024,
            "height": 768,
            "quality": "premium",
            "seed": 5,
        },
    }
    assert [i.index for i in response.images] == [0, 1]
    assert response.images[0].mime_type == "image/png"


async def test_titan_inpainting_turns_the_alpha_mask_black_and_white(
    provider: BedrockProvider, fake: FakeBedrockImages
) -> None:
    mask_image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask_image.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent: repaint it
    out = io.BytesIO()
    mask_image.save(out, format="PNG")
    await provider.edit_images(
        image_pb2.EditRequest(prompt="a hat"), [inline()], inline(out.getvalue()), CallContext(model=TITAN)
    )
    params = fake.requests[-1].body["inPaintingParams"]
    assert params["text"] == "a hat"
    mask = Image.open(io.BytesIO(base64.b64decode(params["maskImage"]))).convert("L")
    assert (mask.getpixel((10, 10)), mask.getpixel((50, 10))) == (0, 255)


async def test_titan_variation(provider: BedrockProvider, fake: FakeBedrockImages) -> None:
    response = await provider.create_image_variation(
        image_pb2.CreateVariationRequest(n=3), inline(), CallContext(model=TITAN)
    )
    assert len(response.images) == 3
    assert fake.requests[-1].body["taskType"] == "IMAGE_VARIATION"


async def test_stability_runs_one_call_per_image(provider: BedrockProvider, fake: FakeBedrockImages) -> None:
    request = image_pb2.GenerateRequest(
        prompt="a city", n=2, aspect_ratio="16:9", output_format=image_pb2.IMAGE_FORMAT_JPEG
    )
    response = await provider.generate_images(request, CallContext(model=STABILITY))
    bodies = [r.body for r in fake.requests]
    assert bodies == [{"prompt": "a city", "aspect_ratio": "16:9", "output_format": "jpeg"}] * 2
    assert [(i.index, i.seed) for i in response.images] == [(0, 42), (1, 42)]


async def test_stability_image_to_image_edit(provider: BedrockProvider, fake: FakeBedrockImages) -> None:
    await provider.edit_images(
        image_pb2.EditRequest(prompt="night"), [inline()], None, CallContext(model=STABILITY)
    )
    body = fake.requests[-1].body
    assert body["mode"] == "image-to-image"
    assert base64.b64decode(body["image"]) == PNG


async def test_stability_filter_is_content_filtered(
    provider: BedrockProvider, fake: FakeBedrockImages
) -> None:
    data = base64.b64encode(PNG).decode()
    reply = json_reply({"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": [data]})
    fake.enqueue(reply)
    with pytest.raises(GatewayError) as info:
        await provider.generate_images(image_pb2.GenerateRequest(prompt="p"), CallContext(model=STABILITY))
    assert info.value.reason == Reason.CONTENT_FILTERED
