"""Bedrock image models on the fake Bedrock server: InvokeModel bodies of Amazon Titan Image
Generator / Nova Canvas and Stability AI models, checked against AWS's model-parameter documentation
(InvokeModel's body is an opaque blob in the botocore service model), and their native answers.

Titan/Nova: `taskType` TEXT_IMAGE | INPAINTING | IMAGE_VARIATION with the matching params object,
`imageGenerationConfig.numberOfImages` 1..5, width/height 320..4096 in multiples of 16, quality
standard|premium, no unknown keys; answer `{"images": [...], "error": null}`. Stability: `prompt`
required, aspect_ratio/output_format/mode enums, `image` + `strength` only in image-to-image;
answer `{"seeds": [...], "finish_reasons": [null], "images": [...]}`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
from PIL import Image

from tests.providers.fakes._server import Reply, json_reply
from tests.providers.fakes.bedrock_upstream import FakeBedrock
from tests.providers.fakes.openai_images import png_bytes

__all__ = ["FakeBedrockImages", "is_image_model"]

_TASKS = {
    "TEXT_IMAGE": "textToImageParams",
    "INPAINTING": "inPaintingParams",
    "IMAGE_VARIATION": "imageVariationParams",
}
_PARAMS = {
    "textToImageParams": {"text", "negativeText", "style"},
    "inPaintingParams": {"image", "text", "negativeText", "maskPrompt", "maskImage", "returnMask"},
    "imageVariationParams": {"images", "text", "negativeText", "similarityStrength"},
}
_CONFIG = {"numberOfImages", "width", "height", "cfgScale", "seed", "quality"}
_STABILITY = {
    "prompt",
    "negative_prompt",
    "aspect_ratio",
    "seed",
    "output_format",
    "mode",
    "image",
    "strength",
}
_RATIOS = {"16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"}


def is_image_model(model_id: str) -> bool:
    return "image-generator" in model_id or "nova-canvas" in model_id or "stability." in model_id


def _is_image(value: Any) -> bool:
    try:
        Image.open(io.BytesIO(base64.b64decode(value, validate=True))).verify()
    except Exception:
        return False
    return True


def validate_image_body(model_id: str, body: Any) -> list[str]:
    """Problems of an InvokeModel body for an image model (empty when valid)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    if "stability." in model_id:
        problems = [f"unknown key {k!r}" for k in body if k not in _STABILITY]
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            problems.append("prompt: required")
        if "aspect_ratio" in body and body["aspect_ratio"] not in _RATIOS:
            problems.append("aspect_ratio: not a supported ratio")
        if body.get("output_format", "png") not in ("png", "jpeg", "webp"):
            problems.append("output_format: png, jpeg or webp")
        image_to_image = body.get("mode") == "image-to-image"
        if body.get("mode", "text-to-image") not in ("text-to-image", "image-to-image"):
            problems.append("mode: text-to-image or image-to-image")
        if image_to_image != ("image" in body) or (image_to_image and not _is_image(body["image"])):
            problems.append("image: required (a base64 image) exactly in image-to-image mode")
        return problems
    task = body.get("taskType")
    params_key = _TASKS.get(task) if isinstance(task, str) else None
    if params_key is None:
        return ["taskType: TEXT_IMAGE, INPAINTING or IMAGE_VARIATION"]
    problems = [
        f"unknown key {k!r}" for k in body if k not in {"taskType", params_key, "imageGenerationConfig"}
    ]
    params = body.get(params_key)
    if not isinstance(params, dict):
        return [*problems, f"{params_key}: required"]
    problems += [f"{params_key}: unknown key {k!r}" for k in params if k not in _PARAMS[params_key]]
    if task == "TEXT_IMAGE" and not params.get("text"):
        problems.append("textToImageParams.text: required")
    if task == "INPAINTING":
        if not _is_image(params.get("image")):
            problems.append("inPaintingParams.image: a base64 image is required")
        if ("maskImage" in params) == ("maskPrompt" in params):
            problems.append("inPaintingParams: exactly one of maskImage and maskPrompt")
        if "maskImage" in params and not _is_image(params["maskImage"]):
            problems.append("inPaintingParams.maskImage: not a base64 image")
    if task == "IMAGE_VARIATION":
        images = params.get("images")
        if not (isinstance(images, list) and 1 <= len(images) <= 5 and all(_is_image(i) for i in images)):
            problems.append("imageVariationParams.images: 1 to 5 base64 images")
    config = body.get("imageGenerationConfig", {})
    problems += [f"imageGenerationConfig: unknown key {k!r}" for k in config if k not in _CONFIG]
    if not 1 <= config.get("numberOfImages", 1) <= 5:
        problems.append("imageGenerationConfig.numberOfImages: 1 to 5")
    for side in ("width", "height"):
        value = config.get(side, 1024)
        if not (isinstance(value, int) and 320 <= value <= 4096 and value % 16 == 0):
            problems.append(f"imageGenerationConfig.{side}: 320 to 4096, a multiple of 16")
    if config.get("quality", "standard") not in ("standard", "premium"):
        problems.append("imageGenerationConfig.quality: standard or premium")
    return problems


def image_reply(model_id: str, body: dict[str, Any]) -> Reply:
    data = base64.b64encode(png_bytes()).decode()
    if "stability." in model_id:
        return json_reply({"seeds": [42], "finish_reasons": [None], "images": [data]})
    count = body.get("imageGenerationConfig", {}).get("numberOfImages", 1)
    return json_reply({"images": [data] * count, "error": None})


def validate_image_output(payload: Any) -> list[str]:
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        return ["no `images` array"]
    problems = [] if all(_is_image(i) for i in payload["images"]) else ["an image is not base64 image data"]
    if "seeds" in payload:  # Stability
        if set(payload) != {"seeds", "finish_reasons", "images"}:
            problems.append(f"Stability answer keys {sorted(payload)}")
    elif set(payload) - {"images", "error"}:
        problems.append(f"Titan answer keys {sorted(payload)}")
    return problems


class FakeBedrockImages(FakeBedrock):
    """`FakeBedrock` that also serves InvokeModel for image models."""

    @staticmethod
    def _validate(
        action: str, operation: str, model_id: str, headers: dict[str, str], body: Any, query: str
    ) -> list[str]:
        if action == "invoke" and is_image_model(model_id):
            content_type = headers.get("content-type", "")
            problems = [] if content_type == "application/json" else [f"Content-Type is {content_type!r}"]
            return problems + validate_image_body(model_id, body)
        return FakeBedrock._validate(action, operation, model_id, headers, body, query)

    def _default(self, action: str, model_id: str, body: Any, query: str) -> Reply:
        if action == "invoke" and is_image_model(model_id):
            return image_reply(model_id, body)
        return super()._default(action, model_id, body, query)

    def _check_reply(self, operation: str, reply: Reply) -> None:
        if operation == "InvokeModel" and reply.status < 300 and reply.frames is None and reply.validate:
            payload = orjson.loads(reply.body)
            if isinstance(payload, dict) and "images" in payload:
                self._add_response_errors(operation, validate_image_output(payload))
                return
        super()._check_reply(operation, reply)
