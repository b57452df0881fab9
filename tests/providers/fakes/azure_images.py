"""Azure OpenAI image generation and edits on top of the fake Azure resource, validated against the
Azure specs of the request's api-version.

`POST /openai/deployments/{deployment}/images/generations` (JSON, `imageGenerationsRequest`: checked
by openapi-core, and no undeclared top-level fields such as `model`) and `.../images/edits`
(multipart, preview api-versions: the form typed by `imageEditsRequest` and validated against it;
a stable api-version answers 404 as Azure does). Replies are checked as `generateImagesResponse`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.providers.azure_spec import (
    _spec_dict,
    spec_for,
    undeclared_fields,
    validate_azure_request,
    validate_azure_schema,
)
from tests.providers.fakes._server import Reply, json_reply, read_request
from tests.providers.fakes.azure_upstream import AzureRequest, FakeAzure, _Sender, error_reply
from tests.providers.fakes.openai_images import CREATED, parse_multipart, png_bytes

__all__ = ["FakeAzureImages"]

_GENERATIONS = "/openai/deployments/{deployment}/images/generations"
_EDITS = "/openai/deployments/{deployment}/images/edits"


class FakeAzureImages(FakeAzure):
    """`FakeAzure` plus images. `last_form` holds the last valid request's body or typed form."""

    label = "Azure images"
    last_form: dict[str, Any] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route(_GENERATIONS, self._images, methods=["POST"]),
            Route(_EDITS, self._images, methods=["POST"]),
            *super().routes(),
        ]

    async def _images(self, request: Request) -> Response:
        record = self._record(await read_request(request, AzureRequest))
        path, query, headers = record.path, record.query, record.headers
        api_version = query.get("api-version", "")
        spec = spec_for(api_version)
        problems: list[str] = []
        form: dict[str, Any] = {}
        if path.endswith("/edits"):
            if not api_version.endswith("-preview"):
                return _Sender(
                    self, path, api_version, error_reply(404, "404", "Resource not found"), check=False
                )
            try:
                parts = parse_multipart(record.raw, headers.get("content-type", ""))
            except ValueError as exc:
                problems.append(f"multipart: {exc}")
                parts = []
            properties = _spec_dict(spec)["components"]["schemas"]["imageEditsRequest"]["properties"]
            for part in parts:
                name = part.name.removesuffix("[]")
                if name not in properties:
                    problems.append(f"undeclared form field {part.name!r}")
                elif part.filename is not None:
                    form[name] = "<binary>"
                elif properties[name].get("type") == "integer":
                    form[name] = int(part.data)
                else:
                    form[name] = part.data.decode()
            problems += validate_azure_schema(spec, "imageEditsRequest", form)
        else:
            problems = validate_azure_request(
                "POST", path, query, record.raw or None, headers, content_type="application/json"
            )
            form = record.body if isinstance(record.body, dict) else {}
            problems += [
                f"undeclared field {p}" for p in undeclared_fields(spec, "imageGenerationsRequest", form)
            ]
        if problems:
            self._add_validation_errors([f"POST {path}: {p}" for p in problems])
            return _Sender(self, path, api_version, self._rejection(problems[0]), check=False)
        denied = self._check_credentials(headers)
        if denied is not None:
            return _Sender(self, path, api_version, denied)
        self.last_form = form
        reply = self._next_reply() or _images_reply(int(form.get("n", 1)))
        if reply.status < 300:
            self._add_response_errors(
                path, validate_azure_schema(spec, "generateImagesResponse", orjson.loads(reply.body))
            )
        return _Sender(self, path, api_version, reply, check=False)


def _images_reply(count: int) -> Reply:
    item = {"b64_json": base64.b64encode(png_bytes()).decode(), "revised_prompt": "a revised prompt"}
    return json_reply({"created": CREATED, "data": [dict(item) for _ in range(count)]})
