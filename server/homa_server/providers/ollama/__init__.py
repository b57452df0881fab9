"""Ollama adapter over the native API (`POST /api/chat`, `GET /api/tags`).

Modules, one job each: `provider` (the `OllamaProvider` class and its HTTP calls), `options` (the
validated `providers.<name>.options`), `chat_request` (homa request -> `/api/chat` body), `messages`
(homa messages -> Ollama messages), `chat_response` (JSON answer -> homa response, shared usage,
finish and tool-call mapping), `chat_stream` (NDJSON lines -> homa events), `error_mapping` (HTTP
errors and error lines -> GatewayError).
"""

from homa_server.providers.ollama.provider import DEFAULT_BASE_URL, OllamaProvider

__all__ = ["DEFAULT_BASE_URL", "OllamaProvider"]
