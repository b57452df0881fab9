"""ImageService end to end: a real server in front of the spec-validated fake OpenAI Images API
(JSON generation, SSE streaming with partial images, multipart edits and variations), Analyze
through the chat path, local Convert, validation errors with details, and usage records."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
import sqlalchemy as sa
from grpc import aio
from PIL import Image

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.image.v1 import image_service_pb2_grpc as image_grpc
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.app import Gateway, start, stop
from homa_server.store.tables import usage_records
from tests.conftest import make_settings, status_details
from tests.providers.fakes.openai_images import FakeOpenAIImages, parse_multipart, png_bytes, stream_reply


@pytest.fixture(scope="module")
def images_upstream() -> Iterator[FakeOpenAIImages]:
    fake = FakeOpenAIImages().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(images_upstream: FakeOpenAIImages) -> Iterator[FakeOpenAIImages]:
    images_upstream.reset()
    yield images_upstream
    try:
        assert images_upstream.validation_errors == [], "requests violated the OpenAI spec"
        assert images_upstream.response_errors == [], "the fake sent replies that violate the spec"
    finally:
        images_upstream.reset()


@dataclass
class Served:
    stub: image_grpc.ImageServiceStub
    gateway: Gateway


@pytest.fixture
async def served(fake: FakeOpenAIImages) -> AsyncIterator[Served]:
    settings = make_settings(
        providers={
            "mock": {"kind": "mock"},
            "openai": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-test-images"},
        }
    )
    gateway, built = await start(settings)
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield Served(image_grpc.ImageServiceStub(channel), gateway)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def inline(data: bytes, mime: str = "image/png") -> image_pb2.ImageInput:
    return image_pb2.ImageInput(inline_data=content_pb2.InlineData(mime_type=mime, data=data))


def is_png(data: bytes) -> bool:
    return Image.open(io.BytesIO(data)).format == "PNG"


async def usage_rows(gateway: Gateway, method: str) -> list[dict[str, object]]:
    assert gateway.outbox is not None
    await gateway.outbox.flush()
    async with gateway.db.session() as session:
        rows = (await session.execute(sa.select(usage_records).where(usage_records.c.method == method))).all()
    return [dict(row._mapping) for row in rows]


async def test_generate_gpt_image_maps_every_field(served: Served, fake: FakeOpenAIImages) -> None:
    request = image_pb2.GenerateRequest(
        model="openai/gpt-image-1",
        prompt="a lighthouse at dawn",
        n=2,
        size="1024x1024",
        quality=image_pb2.IMAGE_QUALITY_HIGH,
        background=image_pb2.IMAGE_BACKGROUND_OPAQUE,
        output_format=image_pb2.IMAGE_FORMAT_PNG,
        user="u-1",
    )
    request.metadata["team"] = "a"
    response = await served.stub.Generate(request)
    body = fake.requests[-1].body
    assert body == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dawn",
        "n": 2,
        "size": "1024x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "png",
        "user": "u-1",
    }
    assert [i.index for i in response.images] == [0, 1]
    assert all(is_png(i.data) and i.mime_type == "image/png" for i in response.images)
    assert (response.images[0].width, response.images[0].height) == (1024, 1024)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (50, 50)
    assert (response.route.provider, response.route.model) == ("openai", "gpt-image-1")
    assert response.id
    assert response.create_time.seconds == 1713833628
    rows = await usage_rows(served.gateway, "image.Generate")
    assert len(rows) == 1
    assert (rows[0]["images"], rows[0]["status"], rows[0]["model"]) == (2, "completed", "openai/gpt-image-1")


async def test_generate_dall_e_3_asks_for_base64_and_style(served: Served, fake: FakeOpenAIImages) -> None:
    await served.stub.Generate(
        image_pb2.GenerateRequest(
            model="openai/dall-e-3",
            prompt="a cat",
            style=image_pb2.IMAGE_STYLE_NATURAL,
            quality=image_pb2.IMAGE_QUALITY_HD,
        )
    )
    body = fake.requests[-1].body
    assert body["response_format"] == "b64_json"
    assert body["style"] == "natural"
    assert body["quality"] == "hd"
    assert "output_format" not in body
    assert "background" not in body


async def test_stream_generate_sends_partials_then_images_then_finish(
    served: Served, fake: FakeOpenAIImages
) -> None:
    events = [
        e
        async for e in served.stub.StreamGenerate(
            image_pb2.StreamGenerateRequest(model="openai/gpt-image-1", prompt="p", n=2, partial_images=2)
        )
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "route"
    assert kinds[-1] == "finish"
    assert kinds[1:-1] == ["partial_image", "partial_image", "image", "usage"] * 2
    partials = [e.partial_image for e in events if e.HasField("partial_image")]
    assert [(p.index, p.partial_image_index) for p in partials] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [e.image.index for e in events if e.HasField("image")] == [0, 1]
    assert events[-1].finish.image_count == 2
    assert events[-1].finish.reason == usage_pb2.FINISH_REASON_STOP
    assert events[-2].usage.total_tokens == 200  # cumulative
    assert fake.requests[-1].body["stream"] is True
    assert fake.requests[-1].body["partial_images"] == 2
    rows = await usage_rows(served.gateway, "image.StreamGenerate")
    assert [(r["images"], r["status"]) for r in rows] == [(2, "completed")]


async def test_stream_cut_short_is_interrupted(served: Served, fake: FakeOpenAIImages) -> None:
    fake.enqueue(stream_reply(2, 0, complete=False))
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in served.stub.StreamGenerate(
            image_pb2.StreamGenerateRequest(model="openai/gpt-image-1", prompt="p", n=2)
        ):
            pass
    assert status_details(info.value)["ErrorInfo"].reason == "UPSTREAM_STREAM_INTERRUPTED"
    rows = await usage_rows(served.gateway, "image.StreamGenerate")
    assert [(r["images"], r["status"]) for r in rows] == [(1, "interrupted")]


async def test_edit_sends_a_spec_valid_multipart_with_mask(served: Served, fake: FakeOpenAIImages) -> None:
    source, mask = png_bytes(64, 64), png_bytes(64, 64, (0, 0, 0, 0))
    request = image_pb2.EditRequest(
        model="openai/gpt-image-1",
        prompt="add a hat",
        images=[inline(source), inline(png_bytes(32, 32))],
        mask=inline(mask),
        n=1,
        output_format=image_pb2.IMAGE_FORMAT_PNG,
    )
    response = await served.stub.Edit(request)
    assert len(response.images) == 1
    assert is_png(response.images[0].data)
    recorded = fake.requests[-1]
    parts = parse_multipart(recorded.raw, recorded.headers["content-type"])
    assert [(p.name, p.content_type) for p in parts if p.filename] == [
        ("image[]", "image/png"),
        ("image[]", "image/png"),
        ("mask", "image/png"),
    ]
    assert parts[0].data == source
    assert parts[2].data == mask
    assert fake.last_form["prompt"] == "add a hat"
    assert fake.last_form["n"] == 1
    assert (await usage_rows(served.gateway, "image.Edit"))[0]["images"] == 1


async def test_variation_optimises_a_large_jpeg_into_a_square_png(
    served: Served, fake: FakeOpenAIImages
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (1500, 1500), (1, 2, 3)).save(out, format="JPEG")
    response = await served.stub.CreateVariation(
        image_pb2.CreateVariationRequest(
            model="openai/dall-e-2", image=inline(out.getvalue(), "image/jpeg"), n=2
        )
    )
    assert len(response.images) == 2
    parts = parse_multipart(fake.requests[-1].raw, fake.requests[-1].headers["content-type"])
    image = next(p for p in parts if p.name == "image")
    assert image.content_type == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (1024, 1024)
    assert fake.last_form == {"image": "<binary>", "model": "dall-e-2", "n": 2, "response_format": "b64_json"}


async def test_variation_without_optimisation_lets_the_spec_check_refuse(
    served: Served, fake: FakeOpenAIImages
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (20, 10)).save(out, format="JPEG")
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.CreateVariation(
            image_pb2.CreateVariationRequest(
                model="openai/dall-e-2", image=inline(out.getvalue(), "image/jpeg"), optimize_upload=False
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the fake answered 400
    assert fake.validation_errors
    assert "square PNG" in fake.validation_errors[0]
    fake.validation_errors.clear()


async def test_analyze_goes_through_the_chat_path(served: Served) -> None:
    response = await served.stub.Analyze(
        image_pb2.AnalyzeRequest(model="mock/echo", prompt="what is this?", images=[inline(png_bytes())])
    )
    assert response.route.provider == "mock"
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.text


async def test_convert_over_grpc(served: Served) -> None:
    response = await served.stub.Convert(
        image_pb2.ConvertRequest(
            image=content_pb2.InlineData(data=png_bytes(300, 100)),
            format=image_pb2.IMAGE_FORMAT_WEBP,
            width=150,
            quality=70,
        )
    )
    assert (response.mime_type, response.width, response.height, response.quality) == (
        "image/webp",
        150,
        50,
        70,
    )
    assert (response.source_width, response.source_height) == (300, 100)
    assert Image.open(io.BytesIO(response.data)).format == "WEBP"


@pytest.mark.parametrize(
    ("call", "request_", "fields"),
    [
        (
            "Generate",
            image_pb2.GenerateRequest(model="openai/gpt-image-1", n=11, size="big"),
            ["prompt", "n", "size"],
        ),
        (
            "Generate",
            image_pb2.GenerateRequest(
                model="openai/gpt-image-1",
                prompt="p",
                background=image_pb2.IMAGE_BACKGROUND_TRANSPARENT,
                output_format=image_pb2.IMAGE_FORMAT_JPEG,
            ),
            ["background"],
        ),
        ("Edit", image_pb2.EditRequest(model="openai/gpt-image-1", prompt="p"), ["images"]),
        (
            "Edit",
            image_pb2.EditRequest(model="openai/gpt-image-1", prompt="p", images=[inline(b"nope")]),
            ["images[0]"],
        ),
        ("Convert", image_pb2.ConvertRequest(image=content_pb2.InlineData(data=b"GIF")), ["image"]),
        ("Convert", image_pb2.ConvertRequest(quality=0), ["image.data", "quality"]),
        ("Analyze", image_pb2.AnalyzeRequest(model="mock/echo", prompt="p"), ["images"]),
    ],
)
async def test_bad_input_is_invalid_argument_with_details(
    served: Served, call: str, request_: object, fields: list[str]
) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await getattr(served.stub, call)(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == fields


async def test_oversized_image_is_refused(served: Served) -> None:
    big = png_bytes(3000, 3000)
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Convert(
            image_pb2.ConvertRequest(image=content_pb2.InlineData(data=big), max_bytes=10)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in status_details(info.value)["BadRequest"].field_violations] == ["max_bytes"]


async def test_provider_without_images_is_failed_precondition(served: Served) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Generate(image_pb2.GenerateRequest(model="mock/echo", prompt="p"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert status_details(info.value)["ErrorInfo"].reason == "CAPABILITY_NOT_SUPPORTED"


async def test_image_urls_pass_the_ssrf_guard(served: Served, fake: FakeOpenAIImages) -> None:
    request = image_pb2.EditRequest(
        model="openai/gpt-image-1",
        prompt="p",
        images=[
            image_pb2.ImageInput(file_uri=content_pb2.FileUri(uri="http://169.254.169.254/latest/meta-data/"))
        ],
    )
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Edit(request)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert status_details(info.value)["ErrorInfo"].reason == "URL_DESTINATION_FORBIDDEN"
    assert "meta-data" not in (info.value.details() or "")
    assert fake.requests == []  # nothing reached the provider


async def test_images_over_the_pixel_limit_are_refused_before_upload(
    served: Served, fake: FakeOpenAIImages
) -> None:
    out = io.BytesIO()
    Image.new("1", (7200, 7200)).save(out, format="PNG")  # 51.8 megapixels, a few kB
    with pytest.raises(aio.AioRpcError) as info:
        await served.stub.Edit(
            image_pb2.EditRequest(model="openai/gpt-image-1", prompt="p", images=[inline(out.getvalue())])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violation = status_details(info.value)["BadRequest"].field_violations[0]
    assert violation.field == "images[0]"
    assert "more than the limit of 50000000" in violation.description
    assert fake.requests == []


async def test_analyze_over_openai_sends_image_parts_and_is_metered(
    served: Served, fake: FakeOpenAIImages
) -> None:
    response = await served.stub.Analyze(
        image_pb2.AnalyzeRequest(
            model="openai/gpt-4o-mini",
            prompt="what colour is it?",
            system_instruction="be brief",
            images=[inline(png_bytes()), inline(png_bytes(4, 4))],
            max_output_tokens=50,
        )
    )
    assert response.text == "Hello there!"
    assert response.usage.input_tokens == 61
    body = fake.requests[-1].body
    assert body["messages"][0]["role"] in ("system", "developer")
    user = body["messages"][-1]["content"]
    assert user[0] == {"type": "text", "text": "what colour is it?"}
    assert [p["type"] for p in user[1:]] == ["image_url", "image_url"]
    assert user[1]["image_url"]["url"].startswith("data:image/png;base64,")
    rows = await usage_rows(served.gateway, "image.Analyze")
    assert [(r["status"], r["input_tokens"]) for r in rows] == [("completed", 61)]


async def test_cancelling_a_stream_closes_the_upstream(served: Served, fake: FakeOpenAIImages) -> None:
    slow = stream_reply(1, 3)
    slow.delay = 0.3
    fake.enqueue(slow)
    call = served.stub.StreamGenerate(
        image_pb2.StreamGenerateRequest(model="openai/gpt-image-1", prompt="p", partial_images=3)
    )
    async for event in call:
        if event.HasField("partial_image"):
            call.cancel()
            break
    disconnect = await fake.wait_for_disconnect(within=2.0)
    assert disconnect.frames_sent < 4
    rows = await usage_rows(served.gateway, "image.StreamGenerate")
    assert [r["status"] for r in rows] == ["cancelled"]
