"""Local token counting uses tiktoken with shipped rank files and OpenAI's chat framing."""

from __future__ import annotations

import tiktoken

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server import tokens


def test_encodings_load_from_shipped_files_and_match_known_ids() -> None:
    o200k = tokens.get_encoding("o200k_base")
    assert isinstance(o200k, tiktoken.Encoding)
    # Known o200k_base ids for this text (same as OpenAI's published tokenizer).
    assert o200k.encode("hello world, this is a test") == [24912, 2375, 11, 495, 382, 261, 1746]
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_encoding_choice_by_model() -> None:
    assert tokens.encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name_for("gpt-4-turbo") == "cl100k_base"
    assert tokens.encoding_name_for("openai/gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_name_for("claude-3-5-sonnet") == "o200k_base"


def test_message_count_follows_openai_chat_framing() -> None:
    request = chat_pb2.CountTokensRequest(model="gpt-4o")
    request.messages.add(role=content_pb2.ROLE_SYSTEM).parts.add(text="You are terse.")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello world, this is a test")
    result = tokens.count_request_tokens(request, "gpt-4o")
    enc = tokens.get_encoding("o200k_base")
    expected = 3 + (3 + len(enc.encode("You are terse."))) + (3 + 7)
    assert result.input_tokens == expected
    assert result.method == "tiktoken:o200k_base"
    assert not result.exact


def test_tools_and_images_add_tokens() -> None:
    base = chat_pb2.CountTokensRequest(model="gpt-4o")
    base.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hi")
    with_more = chat_pb2.CountTokensRequest()
    with_more.CopyFrom(base)
    with_more.messages[0].parts.add(inline_data=content_pb2.InlineData(mime_type="image/png", data=b"x"))
    tool = with_more.tools.add(name="get_weather", description="Weather for a city")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    plain = tokens.count_request_tokens(base, "gpt-4o").input_tokens
    richer = tokens.count_request_tokens(with_more, "gpt-4o").input_tokens
    assert richer > plain + 85
