"""Azure OpenAI chat completion JSON -> homa `CompleteResponse`.

The OpenAI mapping (`providers.openai.chat_response.parse_completion`) reads the message, tool
calls, refusal, finish reason (`content_filter` -> FINISH_REASON_CONTENT_FILTER, the raw value
kept) and usage (cached and reasoning tokens included). Azure adds:

- `prompt_filter_results` and per-choice `content_filter_results`: annotations only. A filtered
  answer shows as the finish reason; a filtered prompt never reaches here (HTTP 400, mapped to
  CONTENT_FILTERED).
- `message.context.citations` ("On Your Data", requested with `data_sources` through
  `provider_options.extra_body`): each becomes a `Citation`. Azure marks the answer with `[docN]`
  for the N-th citation, so `source_id` is "docN"; `title` falls back to the file path; the cited
  span in the answer is unknown (-1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers._errors import protocol_error
from homa_server.providers.openai.chat_response import parse_completion

__all__ = ["citations_from", "parse_azure_completion"]


def parse_azure_completion(provider: str, payload: Any) -> chat_pb2.CompleteResponse:
    """Map a parsed Azure `createChatCompletionResponse`.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a chat completion.
    """
    response = parse_completion(provider, payload)
    message = payload["choices"][0].get("message") or {}
    context = message.get("context")
    if context:
        try:
            response.citations.extend(citations_from(context.get("citations") or (), 0))
        except (AttributeError, TypeError, ValueError) as exc:
            raise protocol_error(provider, f"unexpected citation shape ({type(exc).__name__})") from None
    return response


def citations_from(items: Iterable[Any], offset: int) -> list[content_pb2.Citation]:
    """Azure `citation` objects -> homa Citations; `offset` is how many came before (for docN)."""
    result = []
    for number, item in enumerate(items, start=offset + 1):
        result.append(
            content_pb2.Citation(
                url=item.get("url") or "",
                title=item.get("title") or item.get("filepath") or "",
                cited_text=item.get("content") or "",
                start_index=-1,
                end_index=-1,
                source_id=f"doc{number}",
            )
        )
    return result
