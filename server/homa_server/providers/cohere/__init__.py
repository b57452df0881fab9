"""Cohere adapter over the v2 Chat API (`POST /v2/chat`) and model listing (`GET /v1/models`).

Modules, one job each: `provider` (the `CohereProvider` class and its HTTP calls), `options`
(validated `ProviderSettings.options`), `validation` (input checks against what Cohere can express),
`messages` (homa messages -> Cohere messages and RAG documents), `chat_request` (the rest of the
request body), `chat_response` (whole answers), `chat_stream` (stream events -> homa events),
`result_mapping` (finish reasons, usage, citations, the tool-plan marker) and `error_mapping`
(HTTP errors and failed finishes -> GatewayError).
"""

from homa_server.providers.cohere.provider import DEFAULT_BASE_URL, CohereProvider

__all__ = ["DEFAULT_BASE_URL", "CohereProvider"]
