"""homa `CompleteRequest` -> Azure OpenAI chat completions body
(`POST /deployments/{deployment}/chat/completions?api-version=...`).

The body is OpenAI's, so the OpenAI builder (`providers.openai.chat_request.build_chat_body`) does
the translation and this module adapts its output to the Azure spec of the configured api-version:

- `model` is removed: Azure chooses the model by the deployment in the path, and the spec has no
  `model` field.
- `stream_options` (usage on streams) is sent only where the api-version has it (preview); on GA
  2024-10-21 streams carry no usage.
- `role: "developer"` becomes `role: "system"` where the api-version has no developer role (GA);
  OpenAI defines developer messages as the system messages of newer models, so nothing changes
  in meaning.
- `max_output_tokens` goes to `max_completion_tokens`, or to `max_tokens` when
  `options.max_tokens_field` says so (older model deployments know only that one).
- Structured output (`response_format: json_schema`) is sent in OpenAI's shape on every version.
  The GA spec lists a stray `type` as required inside `json_schema` (fixed in the preview spec and
  not sent by any official SDK); we follow the corrected shape.

Everything Azure cannot express is rejected before building (see `validation.check_request`).
"""

from __future__ import annotations

from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.providers.azure_openai.api_versions import ApiSurface
from homa_server.providers.azure_openai.validation import check_request
from homa_server.providers.openai.chat_request import build_chat_body

__all__ = ["AzureChatBuilder"]


class AzureChatBuilder:
    """Builds chat bodies for one provider instance (its api-version and options, fixed at start).

    Args:
        surface: what the api-version's spec accepts.
        api_version: the configured api-version (quoted in error messages).
        max_tokens_field: "max_completion_tokens" or "max_tokens".
    """

    __slots__ = ("_api_version", "_legacy_max_tokens", "_surface")

    def __init__(self, surface: ApiSurface, api_version: str, max_tokens_field: str) -> None:
        self._surface = surface
        self._api_version = api_version
        self._legacy_max_tokens = max_tokens_field == "max_tokens"

    def build(self, request: chat_pb2.CompleteRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body for `request`.

        Raises:
            GatewayError: INVALID_ARGUMENT naming the field; nothing has been sent.
        """
        check_request(request, self._surface, self._api_version)
        body = build_chat_body(request, "", stream=stream)
        del body["model"]
        surface = self._surface
        if stream and not surface.stream_usage:
            body.pop("stream_options", None)
        if not surface.developer_role:
            for message in body["messages"]:
                if message["role"] == "developer":
                    message["role"] = "system"
        if self._legacy_max_tokens and "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        return body
