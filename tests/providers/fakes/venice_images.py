"""Venice image generation and edits on top of the fake Venice server, validated against Venice's
swagger: requests to `POST /image/generate` and `/image/edit` go through openapi-core like every
Venice request (plus: an edit's `image` must be base64 image bytes); the JSON answer of
`/image/generate` is checked against the operation's 200 schema; `/image/edit` answers raw image
bytes with an image content type, as the spec declares."""

from __future__ import annotations

import base64
import io
from typing import Any

import jsonschema
import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.providers.fakes._server import Reply, json_reply, read_request
from tests.providers.fakes.openai_images import png_bytes
from tests.providers.fakes.venice_upstream import BASE_PATH, FakeVenice, _Sender, error_reply
from tests.providers.venice_spec import _spec_dict, validate_venice_request

__all__ = ["FakeVeniceImages"]

GENERATE = f"{BASE_PATH}/image/generate"
EDIT = f"{BASE_PATH}/image/edit"


def _generate_schema_problems(payload: Any) -> list[str]:
    spec = _spec_dict()
    schema = spec["paths"]["/image/generate"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    validator = jsonschema.Draft202012Validator({**schema, "components": spec.get("components", {})})
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
        for e in validator.iter_errors(payload)
    ]


class FakeVeniceImages(FakeVenice):
    """`FakeVenice` plus `/image/generate` and `/image/edit`."""

    label = "Venice images"

    def routes(self) -> list[BaseRoute]:
        return [
            Route(GENERATE, self._images, methods=["POST"]),
            Route(EDIT, self._images, methods=["POST"]),
            *super().routes(),
        ]

    async def _images(self, request: Request) -> Response:
        record = self._record(await read_request(request))
        path, headers = record.path, record.headers
        problems = validate_venice_request(
            "POST",
            path,
            record.raw or None,
            headers,
            query=record.query,
            content_type=headers.get("content-type", "").split(";")[0],
        )
        body: dict[str, Any] = record.body if isinstance(record.body, dict) else {}
        if path == EDIT and not problems:
            try:
                Image.open(io.BytesIO(base64.b64decode(body.get("image", ""), validate=True))).verify()
            except Exception:
                problems.append("image: not base64 image data")
        if problems:
            self._add_validation_errors([f"POST {path}: {p}" for p in problems])
            return _Sender(self, path, error_reply(400, problems[0].splitlines()[0][:200]), check=False)
        reply = self._next_reply()
        if reply is None and path == GENERATE:
            images = [base64.b64encode(png_bytes()).decode()] * int(body.get("variants", 1))
            timing = {
                "inferenceDuration": 900,
                "inferencePreprocessingTime": 10,
                "inferenceQueueTime": 5,
                "total": 915,
            }
            reply = json_reply({"id": "generate-image-1", "images": images, "timing": timing})
        elif reply is None:
            reply = Reply(body=png_bytes(), content_type="image/png")
        if path == GENERATE and reply.status < 300:
            self._add_response_errors(path, _generate_schema_problems(orjson.loads(reply.body)))
        return _Sender(self, path, reply, check=False)
