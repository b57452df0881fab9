"""Gemini image models against the spec-validated fake: generateContent with image output, n calls for
n images, edits as inlineData parts, masks and variations refused, safety stops as CONTENT_FILTERED."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import ImageProvider
from homa_server.providers.gemini import GeminiProvider
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    FakeGemini,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_upstream_fixture,
    json_reply,
)
from tests.providers.fakes.openai_images import png_bytes

MODEL = "gemini-2.5-flash-image"
PNG = png_bytes(12, 12)


def image_answer(finish: str = "STOP", *, with_image: bool = True) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": "Here is your image."}]
    if with_image:
        parts.append({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}})
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1290, "totalTokenCount": 1297},
        "modelVersion": MODEL,
        "responseId": "resp-img-1",
    }


async def test_is_an_image_provider(gemini_provider: GeminiProvider) -> None:
    assert isinstance(gemini_provider, ImageProvider)


async def test_generate_n_images_with_aspect_ratio(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(json_reply(image_answer()), json_reply(image_answer()))
    request = image_pb2.GenerateRequest(prompt="a kite", n=2, aspect_ratio="16:9", seed=7)
    response = await gemini_provider.generate_images(request, gemini_ctx(MODEL))
    assert [i.index for i in response.images] == [0, 1]
    assert response.images[0].data == PNG
    assert response.images[0].mime_type == "image/png"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (14, 2580)
    bodies = [r.body for r in gemini_fake.requests]
    assert len(bodies) == 2
    assert bodies[0] == {
        "contents": [{"role": "user", "parts": [{"text": "a kite"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9"},
            "seed": 7,
        },
    }
    assert gemini_fake.requests[0].path.endswith(f"/models/{MODEL}:generateContent")


async def test_edit_sends_images_before_the_prompt(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(json_reply(image_answer()))
    source = content_pb2.InlineData(mime_type="image/png", data=PNG)
    response = await gemini_provider.edit_images(
        image_pb2.EditRequest(prompt="make it blue"), [source], None, gemini_ctx(MODEL)
    )
    assert len(response.images) == 1
    parts = gemini_fake.requests[-1].body["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
        {"text": "make it blue"},
    ]


async def test_masks_and_variations_are_refused(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    image = content_pb2.InlineData(mime_type="image/png", data=PNG)
    with pytest.raises(GatewayError) as info:
        await gemini_provider.edit_images(
            image_pb2.EditRequest(prompt="p"), [image], image, gemini_ctx(MODEL)
        )
    assert info.value.field_violations[0].field == "mask"
    with pytest.raises(GatewayError) as info:
        await gemini_provider.create_image_variation(
            image_pb2.CreateVariationRequest(), image, gemini_ctx(MODEL)
        )
    assert info.value.reason == Reason.CAPABILITY_NOT_SUPPORTED
    assert gemini_fake.requests == []


async def test_safety_stop_without_image_is_content_filtered(
    gemini_provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.enqueue(json_reply(image_answer("IMAGE_SAFETY", with_image=False)))
    with pytest.raises(GatewayError) as info:
        await gemini_provider.generate_images(image_pb2.GenerateRequest(prompt="p"), gemini_ctx(MODEL))
    assert info.value.reason == Reason.CONTENT_FILTERED
    assert info.value.code != Code.OK
