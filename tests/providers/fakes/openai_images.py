"""The OpenAI Images API on top of the fake OpenAI server, validated against the official spec.

`FakeOpenAIImages` adds `POST /v1/images/generations` (JSON; SSE when `stream: true`),
`/v1/images/edits` and `/v1/images/variations` (multipart/form-data) to `FakeOpenAI`.

Request checks (problems land in `validation_errors`, the request is answered 400):
- JSON bodies go through openapi-core like every other OpenAI request;
- multipart bodies are parsed strictly (CRLF framing, one `Content-Disposition: form-data; name=...`
  per part, a `filename` and an image `Content-Type` on file parts, the closing boundary), the text
  fields are typed by the schema (integers for `n`, `output_compression`, ...) and the whole form is
  validated against `CreateImageEditRequest` / `CreateImageVariationRequest`; binary parts must be
  decodable PNG/JPEG/WebP, and for dall-e-2 square PNGs under 4 MB as the spec says.
Replies (JSON `ImagesResponse`, each SSE event as `ImageGenStreamEvent`) are checked against the spec;
drift lands in `response_errors`.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from typing import Any

import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.providers.fakes._server import Reply, json_reply, read_request
from tests.providers.fakes.openai_upstream import FakeOpenAI, RecordedRequest, _Sender, error_reply, sse_reply
from tests.providers.spec_validation import _spec_dict, validate_openai_request, validate_openai_schema

__all__ = ["FakeOpenAIImages", "FormPart", "parse_multipart", "png_bytes"]

CREATED = 1713833628
IMAGE_USAGE = {
    "total_tokens": 100,
    "input_tokens": 50,
    "output_tokens": 50,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
}
_MULTIPART_SCHEMAS = {
    "/v1/images/edits": "CreateImageEditRequest",
    "/v1/images/variations": "CreateImageVariationRequest",
}


def png_bytes(
    width: int = 8, height: int = 8, color: tuple[int, int, int, int] = (200, 40, 40, 255)
) -> bytes:
    """A small RGBA PNG."""
    out = io.BytesIO()
    Image.new("RGBA", (width, height), color).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class FormPart:
    """One multipart part."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(raw: bytes, content_type: str) -> list[FormPart]:
    """Parse a multipart/form-data body strictly; raises ValueError describing the first problem."""
    match = re.match(r'^multipart/form-data;\s*boundary="?([^";]+)"?$', content_type)
    if match is None:
        raise ValueError(f"not multipart/form-data with a boundary: {content_type!r}")
    delimiter = b"--" + match.group(1).encode()
    if not raw.startswith(delimiter + b"\r\n"):
        raise ValueError("the body does not start with the boundary")
    if not raw.endswith(delimiter + b"--\r\n") and not raw.endswith(delimiter + b"--"):
        raise ValueError("the body does not end with the closing boundary")
    chunks = raw.split(b"\r\n" + delimiter)
    chunks[0] = chunks[0][len(delimiter) :]
    parts: list[FormPart] = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break
        if not chunk.startswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise ValueError("a part is not CRLF framed")
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'(?:^|;\s*)name="([^"]*)"', disposition)
        if not disposition.startswith("form-data") or name is None:
            raise ValueError(f"a part has no form-data disposition with a name: {disposition!r}")
        filename = re.search(r'filename="([^"]*)"', disposition)
        parts.append(
            FormPart(
                name.group(1), filename.group(1) if filename else None, headers.get("content-type"), data
            )
        )
    return parts


def _typed_form(parts: list[FormPart], schema: str) -> tuple[dict[str, Any], list[str]]:
    """The form as the JSON instance the schema describes (binary parts as placeholders) + problems."""
    properties = _spec_dict()["components"]["schemas"][schema]["properties"]
    problems: list[str] = []
    form: dict[str, Any] = {}
    for part in parts:
        name = part.name[:-2] if part.name.endswith("[]") else part.name
        spec = properties.get(name)
        if spec is None:
            problems.append(f"unknown form field {part.name!r}")
            continue
        if part.filename is not None:
            if part.content_type not in ("image/png", "image/jpeg", "image/webp"):
                problems.append(f"{part.name}: file part with content type {part.content_type!r}")
            try:
                Image.open(io.BytesIO(part.data)).verify()
            except Exception:
                problems.append(f"{part.name}: file part is not a decodable image")
            if part.name.endswith("[]"):
                form.setdefault(name, []).append("<binary>")
            else:
                form[name] = "<binary>"
            continue
        text = part.data.decode()
        kind = spec.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if "integer" in kinds:
            form[name] = int(text) if text.lstrip("-").isdigit() else text
        elif "boolean" in kinds:
            form[name] = text == "true" if text in ("true", "false") else text
        else:
            form[name] = text
    return form, problems


def _dall_e_2_checks(parts: list[FormPart], form: dict[str, Any]) -> list[str]:
    if form.get("model", "dall-e-2") != "dall-e-2":
        return []
    problems = []
    for part in parts:
        if part.filename is None:
            continue
        image = Image.open(io.BytesIO(part.data))
        if image.format != "PNG" or len(part.data) >= 4 * 1024 * 1024 or image.width != image.height:
            problems.append(f"{part.name}: dall-e-2 needs a square PNG under 4 MB")
    return problems


def images_reply(count: int, *, revised: str | None = None, fmt: str = "png", gpt: bool = True) -> Reply:
    """An `ImagesResponse` with `count` base64 PNGs (GPT image fields when `gpt`)."""
    item: dict[str, Any] = {"b64_json": base64.b64encode(png_bytes()).decode()}
    if revised is not None:
        item["revised_prompt"] = revised
    payload: dict[str, Any] = {"created": CREATED, "data": [dict(item) for _ in range(count)]}
    if gpt:
        payload.update(
            background="opaque", output_format=fmt, size="1024x1024", quality="high", usage=IMAGE_USAGE
        )
    return json_reply(payload)


def stream_reply(count: int, partials: int, *, complete: bool = True) -> Reply:
    """`ImageGenStreamEvent`s: per image, `partials` partial images then the completed event."""
    frames: list[dict[str, Any] | bytes] = []
    common = {
        "created_at": CREATED,
        "size": "1024x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "png",
    }
    data = base64.b64encode(png_bytes()).decode()
    for image in range(count):
        for index in range(partials):
            event = {
                "type": "image_generation.partial_image",
                "b64_json": data,
                **common,
                "partial_image_index": index,
            }
            frames.append(b"event: image_generation.partial_image\ndata: " + orjson.dumps(event) + b"\n\n")
        if complete or image < count - 1:
            event = {"type": "image_generation.completed", "b64_json": data, **common, "usage": IMAGE_USAGE}
            frames.append(b"event: image_generation.completed\ndata: " + orjson.dumps(event) + b"\n\n")
    return sse_reply(frames, done=False)


class FakeOpenAIImages(FakeOpenAI):
    """`FakeOpenAI` plus the Images API."""

    label = "OpenAI images"
    last_form: dict[str, Any] = {}

    def routes(self) -> list[BaseRoute]:
        images = [
            Route("/v1/images/generations", self._images, methods=["POST"]),
            Route("/v1/images/edits", self._images, methods=["POST"]),
            Route("/v1/images/variations", self._images, methods=["POST"]),
        ]
        return images + super().routes()

    async def _images(self, request: Request) -> Response:
        got = await read_request(request)
        path, headers, raw = got.path, got.headers, got.raw
        self._record(RecordedRequest(got.method, path, headers, got.body, raw, got.time, got.client_port))
        content_type = headers.get("content-type", "")
        body: dict[str, Any] = {}
        if path in _MULTIPART_SCHEMAS:
            problems: list[str] = []
            if not headers.get("authorization", "").startswith("Bearer "):
                problems.append("SecurityValidationError: no bearer token")
            try:
                parts = parse_multipart(raw, content_type)
                body, problems_form = _typed_form(parts, _MULTIPART_SCHEMAS[path])
                problems += problems_form
                problems += validate_openai_schema(_MULTIPART_SCHEMAS[path], body)
                problems += _dall_e_2_checks(parts, body)
            except ValueError as exc:
                problems.append(f"multipart: {exc}")
        else:
            problems = validate_openai_request(
                "POST", path, raw or None, headers, content_type=content_type.split(";")[0]
            )
            body = got.body if isinstance(got.body, dict) else {}
        if problems:
            self._add_validation_errors([f"POST {path}: {p}" for p in problems])
            return _Sender(
                self,
                path,
                error_reply(400, "Request does not match the OpenAPI spec: " + problems[0]),
                check=False,
            )
        self.last_form = body
        reply = self._next_reply()
        if reply is None:
            model = str(body.get("model", "dall-e-2"))
            gpt = model.startswith("gpt-image")
            if body.get("stream") is True:
                reply = stream_reply(int(body.get("n", 1)), int(body.get("partial_images", 0)))
            else:
                reply = images_reply(
                    int(body.get("n", 1)), fmt=str(body.get("output_format", "png")), gpt=gpt
                )
        self._check_images_reply(path, reply)
        return _Sender(self, path, reply, check=False)

    def _check_images_reply(self, path: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for frame in reply.frames:
                data = frame.split(b"data: ", 1)[1] if b"data: " in frame else b""
                if data.strip():
                    problems += validate_openai_schema("ImageGenStreamEvent", orjson.loads(data))
        elif reply.status >= 400:
            problems = validate_openai_schema("ErrorResponse", orjson.loads(reply.body))
        else:
            problems = validate_openai_schema("ImagesResponse", orjson.loads(reply.body))
        self._add_response_errors(path, problems)
