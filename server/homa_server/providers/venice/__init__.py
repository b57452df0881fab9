"""Venice AI adapter (kind "venice"): OpenAI-style chat completions plus Venice's extras.

Modules, one job each: `provider` (the `VeniceProvider` class and its HTTP calls), `chat_request`
(homa request -> Venice body, reusing the OpenAI builder), `messages` (homa messages -> Venice
messages: media, documents, reasoning round-trip), `parameters` (`provider_options.venice`),
`chat_response` (completion JSON -> homa response, usage, citations), `chat_stream` (stream chunks
-> homa events), `reasoning` (signature envelope, `<think>` splitting), `error_mapping` (HTTP and
stream errors -> GatewayError), `rate_limits` (rate-limit headers -> retry_after) and `options`
(provider settings).
"""

from homa_server.providers.venice.provider import DEFAULT_BASE_URL, VeniceProvider

__all__ = ["DEFAULT_BASE_URL", "VeniceProvider"]
