"""Azure OpenAI audio: the OpenAI audio wire (see providers/openai/audio.py) on deployment URLs.

`POST {base_url}/deployments/{deployment}/audio/{transcriptions|translations|speech}?api-version=`;
`audio/speech` needs a preview api-version (2025-04-01-preview): with a stable one Azure answers
404, mapped like any other Azure error. The deployment is `options.deployments[model]` or the
model name itself, as for chat.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from homa_server.errors import GatewayError
from homa_server.providers.azure_openai.error_mapping import Origin, error_from_response
from homa_server.providers.base import CallContext
from homa_server.providers.openai.audio import OpenAIAudio

__all__ = ["AzureAudio"]


class AzureAudio(OpenAIAudio):
    """The `OpenAIAudio` hooks for Azure. The provider sets `_base`, `_query` and `_deployments`."""

    _base: str
    _query: str
    _deployments: dict[str, str]

    def _audio_url(self, operation: str, model: str) -> httpx.URL:
        deployment = quote(self._deployments.get(model, model), safe="")
        return httpx.URL(f"{self._base}/deployments/{deployment}/audio/{operation}?{self._query}")

    def _audio_headers(self, ctx: CallContext) -> dict[str, str]:
        return {}

    def _audio_error(self, response: httpx.Response, model: str) -> GatewayError:
        origin = Origin(self._name, model, self._deployments.get(model, model))
        return error_from_response(origin, response.status_code, response.headers, response.content)

    def _voice_models(self) -> list[str]:
        """Empty: the voices work with every speech deployment, whatever its name."""
        return []
