"""Request bodies for the benchmark: gRPC-framed homa requests (for h2load) and the OpenAI JSON the
gateway's adapter sends upstream (for the direct baseline against the mock).
"""

from __future__ import annotations

import struct
from typing import Any

import orjson
from google.protobuf.message import Message

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2

PROVIDER = "upstream"
UPSTREAM_MODEL = "gpt-4o-mini"
MODEL = f"{PROVIDER}/{UPSTREAM_MODEL}"
# ~100 characters, one user message: a typical short chat turn.
USER_TEXT = (
    "Summarise in one sentence why connection pooling matters for a gateway that calls model providers."
)


def _messages() -> list[content_pb2.Message]:
    return [content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text=USER_TEXT)])]


def complete_request() -> chat_pb2.CompleteRequest:
    """The unary request every benchmark call sends."""
    return chat_pb2.CompleteRequest(model=MODEL, messages=_messages())


def stream_request() -> chat_pb2.StreamCompleteRequest:
    """The streaming request every benchmark call sends."""
    return chat_pb2.StreamCompleteRequest(model=MODEL, messages=_messages())


def grpc_frame(message: Message) -> bytes:
    """A length-prefixed gRPC message: compressed flag 0, 4-byte big-endian length, the bytes."""
    payload = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def direct_body(stream: bool) -> bytes:
    """The Chat Completions body the gateway's OpenAI adapter sends for the benchmark request.

    Built by the adapter itself when it is importable, so the baseline sends the same bytes;
    otherwise an equivalent hand-written body.
    """
    try:
        from homa_server.providers.openai.chat_request import build_chat_body  # noqa: PLC0415

        body: dict[str, Any] = build_chat_body(complete_request(), UPSTREAM_MODEL, stream=stream)
    except ImportError:
        body = {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": USER_TEXT}]}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
    return orjson.dumps(body)
