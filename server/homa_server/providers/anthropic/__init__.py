"""Anthropic adapter (Messages API: api.anthropic.com and compatible endpoints).

Modules, one job each: `provider` (the `AnthropicProvider` class and its HTTP calls), `options`
(vendor settings), `validation` (structural input checks), `content` (homa messages -> system and
content blocks), `messages_request` (homa request -> Messages / count_tokens bodies),
`messages_response` (Message JSON -> homa response; usage, finish and citation mapping),
`messages_stream` (SSE events -> homa events) and `error_mapping` (HTTP and stream errors ->
GatewayError).
"""

from homa_server.providers.anthropic.options import AnthropicOptions
from homa_server.providers.anthropic.provider import DEFAULT_BASE_URL, AnthropicProvider

__all__ = ["DEFAULT_BASE_URL", "AnthropicOptions", "AnthropicProvider"]
