"""OpenAI adapter (api.openai.com and OpenAI-compatible servers) over Chat Completions.

Modules, one job each: `provider` (the `OpenAIProvider` class and its HTTP calls), `chat_request`
(homa request -> Chat Completions body), `chat_response` (completion JSON -> homa response),
`chat_stream` (stream chunks -> homa events), `responses_input` (Responses-format input for token
counting), `error_mapping` (HTTP and stream errors -> GatewayError), `validation` and `parts`
(shared input checks and media encoding).
"""

from homa_server.providers.openai.provider import DEFAULT_BASE_URL, OpenAIProvider

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider"]
