"""Azure OpenAI images: the OpenAI Images wire (providers/openai/images.py) on deployment URLs.

`POST {base_url}/deployments/{deployment}/images/generations?api-version=` (stable and preview
api-versions) and `.../images/edits` (preview api-versions only; a stable one answers 404, mapped
like any other Azure error). Bodies carry no `model` (the deployment names it). Azure's spec
documents no streamed image responses, so StreamGenerate is served by one whole generation whose
images are sent as events; and it has no variations endpoint (CAPABILITY_NOT_SUPPORTED).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from homa.image.v1 import image_service_pb2 as image_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.azure_openai.error_mapping import Origin, error_from_response
from homa_server.providers.base import CallContext
from homa_server.providers.openai.image_calls import OpenAIImages

__all__ = ["AzureImages"]


class AzureImages(OpenAIImages):
    """The `OpenAIImages` hooks for Azure. The provider sets `_base`, `_query` and `_deployments`."""

    _base: str
    _query: str
    _deployments: dict[str, str]

    def _images_url(self, operation: str, model: str) -> httpx.URL:
        deployment = quote(self._deployments.get(model, model), safe="")
        return httpx.URL(f"{self._base}/deployments/{deployment}/images/{operation}?{self._query}")

    def _images_headers(self, ctx: CallContext) -> dict[str, str]:
        return {}

    def _images_error(self, response: httpx.Response, model: str) -> GatewayError:
        origin = Origin(self._name, model, self._deployments.get(model, model))
        return error_from_response(origin, response.status_code, response.headers, response.content)

    def _streams_images(self, model: str) -> bool:
        return False

    def _sends_model(self) -> bool:
        return False

    async def create_image_variation(
        self, request: image_pb2.CreateVariationRequest, image: content_pb2.InlineData, ctx: CallContext
    ) -> image_pb2.GenerateResponse:
        """Not offered by Azure OpenAI: FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED."""
        raise GatewayError(
            "Azure OpenAI has no image variations endpoint",
            Code.FAILED_PRECONDITION,
            Reason.CAPABILITY_NOT_SUPPORTED,
            metadata={"provider": self._name, "capability": "image_variations"},
        )
