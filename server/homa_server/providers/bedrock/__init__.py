"""Amazon Bedrock adapter over the Converse API (Bedrock Runtime), plus model listing (control plane).

Modules, one job each: `provider` (the `BedrockProvider` class and its HTTP calls), `options`
(vendor settings), `auth` (SigV4 via botocore, or a Bedrock API key), `chat_request` (homa
request -> Converse body), `content` (media parts -> content blocks), `validation` (input checks),
`chat_response` (Converse JSON -> homa response; usage, finish and citation mapping),
`eventstream` (binary event-stream framing, decoded by botocore), `chat_stream` (stream events ->
homa events) and `error_mapping` (HTTP errors and exception frames -> GatewayError).
"""

from homa_server.providers.bedrock.provider import BedrockProvider

__all__ = ["BedrockProvider"]
