"""Venice chat completion JSON -> homa `CompleteResponse`; usage and citation mapping.

The OpenAI mapping (`openai.chat_response.parse_completion`) reads the shared shape: id, created,
content, `reasoning_content`, tool calls, finish reason (stop, length, tool_calls, content_filter)
and the protocol-error handling. Venice's additions are applied on top of it:

- usage: `prompt_tokens_details.cache_creation_input_tokens` is Venice's cache-write count (see
  `usage_from`);
- reasoning: a `<think>…</think>` block opening the content becomes the Reasoning part (unless the
  request stripped thinking or the deployment turned parsing off), and `reasoning_details` /
  `thought_signature` become its opaque signature (see `reasoning`); reasoning that arrives only as
  a signature gives a Reasoning part with `redacted` set;
- citations: `venice_parameters.web_search_citations` (web search) become `citations`, in order,
  with `source_id` the 1-based number the model uses in `^n^` markers. Venice gives no character
  spans, so start/end are -1.

`cost` (Venice's own USD/DIEM price of the call) is not mapped: the gateway prices usage itself.
"""

from __future__ import annotations

from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import GatewayError
from homa_server.providers._errors import protocol_error
from homa_server.providers.openai.chat_response import parse_completion
from homa_server.providers.venice.reasoning import details_text, encode_signature, split_think

__all__ = ["citations_from", "content_text", "parse_venice_completion", "usage_from"]


def usage_from(usage: dict[str, Any]) -> usage_pb2.Usage:
    """Venice usage -> homa Usage.

    Venice reports usage the OpenAI way: `prompt_tokens` includes cache reads (`cached_tokens`) and
    writes (`cache_creation_input_tokens`), `completion_tokens` includes `reasoning_tokens`. Should a
    model's numbers show otherwise (a part larger than its whole), the part is added to the whole, so
    homa's inclusive totals hold either way. `total_tokens` is input + output, as homa defines it.
    """
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    cached = written = reasoning = 0
    if isinstance(prompt_details, dict):
        cached = _count(prompt_details.get("cached_tokens"))
        written = _count(prompt_details.get("cache_creation_input_tokens"))
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, dict):
        reasoning = _count(completion_details.get("reasoning_tokens"))
    if cached + written > prompt:
        prompt += cached + written
    if reasoning > completion:
        completion += reasoning
    return usage_pb2.Usage(
        input_tokens=prompt,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=completion,
        reasoning_tokens=reasoning,
        total_tokens=prompt + completion,
    )


def citations_from(venice_parameters: Any) -> list[content_pb2.Citation]:
    """`venice_parameters.web_search_citations` -> homa citations (empty when there are none)."""
    if not isinstance(venice_parameters, dict):
        return []
    found = venice_parameters.get("web_search_citations")
    if not isinstance(found, list):
        return []
    result = []
    for number, item in enumerate(found, start=1):
        if not isinstance(item, dict):
            continue
        result.append(
            content_pb2.Citation(
                url=_text(item.get("url")),
                title=_text(item.get("title")),
                cited_text=_text(item.get("content")),
                start_index=-1,
                end_index=-1,
                source_id=str(number),
            )
        )
    return result


def parse_venice_completion(provider: str, payload: Any, *, think_tags: bool) -> chat_pb2.CompleteResponse:
    """Map a parsed Venice chat completion.

    Args:
        provider: instance name, for errors.
        payload: the parsed JSON body.
        think_tags: split a `<think>` block opening the content into reasoning.

    Raises:
        GatewayError: UPSTREAM_PROTOCOL_ERROR when the payload is not a chat completion.
    """
    try:
        _flatten_content(payload)
    except (AttributeError, KeyError, IndexError, TypeError) as exc:
        raise protocol_error(provider, f"unexpected chat completion shape ({type(exc).__name__})") from None
    response = parse_completion(provider, payload)
    try:
        _adapt(response, payload, think_tags=think_tags)
    except GatewayError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise protocol_error(provider, f"unexpected chat completion shape ({type(exc).__name__})") from None
    return response


def content_text(content: Any) -> str:
    """Message content as one string: Venice's schema also allows an array of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str)
        )
    return ""


def _flatten_content(payload: Any) -> None:
    """Turn array content into a string in place, so the OpenAI mapping can read it."""
    for choice in payload["choices"][:1]:
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message["content"] = content_text(message["content"])


def _adapt(response: chat_pb2.CompleteResponse, payload: dict[str, Any], *, think_tags: bool) -> None:
    message = payload["choices"][0].get("message") or {}
    message_parts = response.message.parts
    has_reasoning = bool(message_parts) and message_parts[0].WhichOneof("kind") == "reasoning"
    content = message.get("content")
    if think_tags and not has_reasoning and isinstance(content, str) and content:
        reasoning, text = split_think(content)
        if reasoning:
            index = next(i for i, p in enumerate(message_parts) if p.WhichOneof("kind") == "text")
            if text:
                message_parts[index].text = text
            else:
                del message_parts[index]
            message_parts.insert(0, content_pb2.Part(reasoning=content_pb2.Reasoning(text=reasoning)))
            has_reasoning = True
    details = message.get("reasoning_details")
    thought = message.get("thought_signature")
    signature = encode_signature(
        details if isinstance(details, list) else None, thought if isinstance(thought, str) else None
    )
    if signature:
        if not has_reasoning:
            text = details_text(details)
            reasoning_part = content_pb2.Reasoning(text=text, redacted=not text)
            message_parts.insert(0, content_pb2.Part(reasoning=reasoning_part))
        message_parts[0].reasoning.signature = signature
    usage = payload.get("usage")
    if isinstance(usage, dict):
        response.usage.CopyFrom(usage_from(usage))
    response.citations.extend(citations_from(payload.get("venice_parameters")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
