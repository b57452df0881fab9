"""Azure OpenAI adapter (data plane, chat completions), kind "azure_openai".

Reuses the OpenAI adapter's body translation, response mapping and stream decoder, adapting them
to the Azure spec of the configured api-version. Modules, one job each: `provider` (the
`AzureOpenAIProvider` class and its HTTP calls), `options` (vendor settings), `api_versions`
(what each api-version's spec accepts), `validation` (Azure-specific input checks),
`chat_request` (homa request -> body), `chat_response` (completion JSON -> homa response,
citations), `chat_stream` (stream chunks -> homa events), `error_mapping` (HTTP and stream errors
-> GatewayError).
"""

from homa_server.providers.azure_openai.provider import AzureOpenAIProvider

__all__ = ["AzureOpenAIProvider"]
