"""Turn the inputs the client methods accept (requests, builders, plain text) into request messages.

`CompleteRequest` and `StreamCompleteRequest` are wire-identical by contract, so either (or a
`ChatRequestBuilder`) is accepted wherever a chat request is expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_client.builders import ChatRequestBuilder, tool_result, user_message

ChatRequestInput = chat_pb2.CompleteRequest | chat_pb2.StreamCompleteRequest | ChatRequestBuilder
CountTokensInput = chat_pb2.CountTokensRequest | ChatRequestInput
ConverseStartInput = chat_pb2.ConverseStart | ChatRequestBuilder | str
UserTurnInput = str | content_pb2.Message
ToolResultsInput = Iterable[content_pb2.ToolResult] | Mapping[str, Any]


def complete_request(value: ChatRequestInput) -> chat_pb2.CompleteRequest:
    """A `CompleteRequest` (the same object when one is given).

    Raises:
        TypeError: an unsupported input type.
    """
    if isinstance(value, chat_pb2.CompleteRequest):
        return value
    if isinstance(value, ChatRequestBuilder):
        return value.build()
    if isinstance(value, chat_pb2.StreamCompleteRequest):
        return chat_pb2.CompleteRequest.FromString(value.SerializeToString())
    raise TypeError(f"expected a CompleteRequest or ChatRequestBuilder, not {type(value).__name__}")


def stream_request(value: ChatRequestInput) -> chat_pb2.StreamCompleteRequest:
    """A `StreamCompleteRequest` (the same object when one is given).

    Raises:
        TypeError: an unsupported input type.
    """
    if isinstance(value, chat_pb2.StreamCompleteRequest):
        return value
    if isinstance(value, ChatRequestBuilder):
        return value.build_stream()
    if isinstance(value, chat_pb2.CompleteRequest):
        return chat_pb2.StreamCompleteRequest.FromString(value.SerializeToString())
    raise TypeError(f"expected a StreamCompleteRequest or ChatRequestBuilder, not {type(value).__name__}")


def count_tokens_request(value: CountTokensInput) -> chat_pb2.CountTokensRequest:
    """A `CountTokensRequest`; from a chat request, its model, messages and tools are counted."""
    if isinstance(value, chat_pb2.CountTokensRequest):
        return value
    request = complete_request(value)
    return chat_pb2.CountTokensRequest(model=request.model, messages=request.messages, tools=request.tools)


def converse_start(value: ConverseStartInput) -> chat_pb2.ConverseStart:
    """A `ConverseStart`: as given, from a builder, or for a bare model name."""
    if isinstance(value, chat_pb2.ConverseStart):
        return value
    if isinstance(value, ChatRequestBuilder):
        return value.build_converse_start()
    if isinstance(value, str):
        return chat_pb2.ConverseStart(model=value)
    raise TypeError(f"expected a ConverseStart, ChatRequestBuilder or model name, not {type(value).__name__}")


def user_turn(value: UserTurnInput) -> chat_pb2.ConverseRequest:
    """A Converse user turn from text or a user `Message`."""
    message = user_message(value) if isinstance(value, str) else value
    return chat_pb2.ConverseRequest(message=message)


def tool_results(value: ToolResultsInput) -> chat_pb2.ConverseRequest:
    """A Converse `tool_results` input: `ToolResult`s, or a mapping of tool call id -> content.

    Non-string contents in the mapping are serialised as JSON.
    """
    if isinstance(value, Mapping):
        results = [tool_result(call_id, content) for call_id, content in value.items()]
    else:
        results = list(value)
    return chat_pb2.ConverseRequest(tool_results=chat_pb2.ToolResults(results=results))
