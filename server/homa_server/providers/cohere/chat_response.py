"""Cohere `ChatResponseV2` JSON -> homa `CompleteResponse`.

Parts, in order: one Reasoning part per `thinking` content item, then the `tool_plan` as a Reasoning
part signed with `TOOL_PLAN_SIGNATURE` (so it goes back as `tool_plan` next turn), then the text
items, then one ToolCall per `tool_calls` entry (arguments kept as the JSON string Cohere sent).
`citations` become homa Citations (see `result_mapping`). Cohere sends no creation time, so
`create_time` stays unset. A finish_reason of ERROR or TIMEOUT raises instead of returning a
partial answer.
"""

from __future__ import annotations

from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers.cohere.error_mapping import CohereErrors
from homa_server.providers.cohere.result_mapping import (
    FINISH_FAILURES,
    FINISH_REASONS,
    TOOL_PLAN_SIGNATURE,
    citations_from,
    usage_from,
)

__all__ = ["parse_chat_response"]


def parse_chat_response(payload: Any, model: str, errors: CohereErrors) -> chat_pb2.CompleteResponse:
    """Map a parsed `ChatResponseV2`.

    Raises:
        GatewayError: UPSTREAM_ERROR / UPSTREAM_TIMEOUT for finish_reason ERROR / TIMEOUT;
            UPSTREAM_PROTOCOL_ERROR when the payload is not a chat response.
    """
    try:
        return _parse(payload, model, errors)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # ValueError also covers protobuf rejecting a wrongly typed field.
        raise errors.protocol(f"unexpected chat response shape ({type(exc).__name__})") from None


def _parse(payload: Any, model: str, errors: CohereErrors) -> chat_pb2.CompleteResponse:
    response_id = payload.get("id") or ""
    raw = payload["finish_reason"]
    if raw in FINISH_FAILURES:
        raise errors.from_finish(model, raw, payload.get("error"), response_id)
    message = payload["message"]
    reasoning: list[content_pb2.Part] = []
    texts: list[content_pb2.Part] = []
    offsets: dict[int, int] = {}  # content index -> answer-text length before it (text items only)
    answer_length = 0
    for index, item in enumerate(message.get("content") or ()):
        kind = item.get("type")
        if kind == "text":
            offsets[index] = answer_length
            answer_length += len(item["text"])
            texts.append(content_pb2.Part(text=item["text"]))
        elif kind == "thinking":
            reasoning.append(content_pb2.Part(reasoning=content_pb2.Reasoning(text=item["thinking"])))
    plan = message.get("tool_plan")
    if plan:
        reasoning.append(
            content_pb2.Part(reasoning=content_pb2.Reasoning(text=plan, signature=TOOL_PLAN_SIGNATURE))
        )
    calls = [
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(
                id=call["id"],
                name=call["function"]["name"],
                arguments_json=call["function"].get("arguments") or "",
            )
        )
        for call in message.get("tool_calls") or ()
    ]
    response = chat_pb2.CompleteResponse(
        id=response_id,
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=[*reasoning, *texts, *calls]),
        finish_reason=FINISH_REASONS.get(raw, usage_pb2.FINISH_REASON_UNSPECIFIED),
        raw_finish_reason=raw,
    )
    for citation in message.get("citations") or ():
        response.citations.extend(citations_from(citation, offsets.get))
    usage = payload.get("usage")
    if usage:
        response.usage.CopyFrom(usage_from(usage))
    return response
