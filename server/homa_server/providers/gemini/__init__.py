"""Google Gemini adapter (Generative Language API v1beta): generateContent, streamGenerateContent
(SSE), countTokens and models.list.

Modules, one job each: `provider` (the `GeminiProvider` class and its HTTP calls), `chat_request`
(homa request -> GenerateContentRequest / countTokens body), `contents` (messages -> contents and
systemInstruction, thought signatures, function responses), `media` (inline and file parts),
`chat_response` (GenerateContentResponse -> homa response; usage and finish mapping),
`chat_stream` (SSE chunks -> homa events), `citations` (citation and grounding metadata),
`error_mapping` (google.rpc.Status errors -> GatewayError), `validation` (input checks) and
`options` (the `options` settings).
"""

from homa_server.providers.gemini.provider import DEFAULT_BASE_URL, GeminiProvider

__all__ = ["DEFAULT_BASE_URL", "GeminiProvider"]
