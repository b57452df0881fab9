"""Anthropic Message JSON -> homa CompleteResponse: content blocks, reasoning signatures, citations,
usage normalisation, finish reasons; plus count_tokens and list_models."""

from __future__ import annotations

import orjson
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.anthropic.messages_response import citation_from, parse_message, usage_from
from tests.providers.conftest import call_ctx, chat_request, message
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import Reply, json_reply, text_block, tool_use_block, usage

anthropic_upstream, anthropic_fake, anthropic_provider = (
    fx.anthropic_upstream,
    fx.anthropic_fake,
    fx.anthropic_provider,
)

MODEL = "claude-sonnet-4-5"
USER, ASSISTANT, TOOL = content_pb2.ROLE_USER, content_pb2.ROLE_ASSISTANT, content_pb2.ROLE_TOOL
SIGNATURE = "EqQBCkYIBxgCKkBkNjE2ZDk1YzQ3NjY0YjY1OTY1ZTQ2ZjA3NTY1NmFhNQ=="
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


async def complete(provider, fake, payload, request=None) -> chat_pb2.CompleteResponse:
    fake.enqueue(json_reply(payload))
    return await provider.complete_chat(request or chat_request(), call_ctx(MODEL))


async def test_text_answer(anthropic_provider, anthropic_fake):
    response = await complete(anthropic_provider, anthropic_fake, fx.message("Hello there!"))
    assert response == chat_pb2.CompleteResponse(
        id="msg_fx1",
        message=content_pb2.Message(role=ASSISTANT, parts=[content_pb2.Part(text="Hello there!")]),
        finish_reason=usage_pb2.FINISH_REASON_STOP,
        raw_finish_reason="end_turn",
        usage=usage_pb2.Usage(input_tokens=25, output_tokens=12, total_tokens=37),
    )


async def test_parallel_tool_calls(anthropic_provider, anthropic_fake):
    blocks = [
        text_block("Checking both."),
        tool_use_block("toolu_a", "get_weather", {"city": "Paris"}),
        tool_use_block("toolu_b", "get_time", {"tz": "CET", "nested": {"x": [1, 2]}}),
    ]
    response = await complete(anthropic_provider, anthropic_fake, fx.message(blocks, stop_reason="tool_use"))
    parts = response.message.parts
    assert parts[0].text == "Checking both."
    calls = [p.tool_call for p in parts[1:]]
    assert [(c.id, c.name, orjson.loads(c.arguments_json)) for c in calls] == [
        ("toolu_a", "get_weather", {"city": "Paris"}),
        ("toolu_b", "get_time", {"tz": "CET", "nested": {"x": [1, 2]}}),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "tool_use"


async def test_thinking_signature_round_trips_on_the_next_turn(anthropic_provider, anthropic_fake):
    """The reasoning parts of a response, sent back as history, reproduce Anthropic's blocks exactly,
    before the tool_use block, as Anthropic requires for thinking + tool use."""
    blocks = [
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": REDACTED},
        tool_use_block("toolu_1", "get_weather", {"city": "Paris"}),
    ]
    first = await complete(anthropic_provider, anthropic_fake, fx.message(blocks, stop_reason="tool_use"))
    assert [p.WhichOneof("kind") for p in first.message.parts] == ["reasoning", "reasoning", "tool_call"]
    assert first.message.parts[0].reasoning == content_pb2.Reasoning(
        text="The user wants the weather.", signature=SIGNATURE.encode()
    )
    assert first.message.parts[1].reasoning == content_pb2.Reasoning(
        redacted=True, signature=REDACTED.encode()
    )

    follow = chat_request(
        message(USER, "Weather in Paris?"),
        first.message,
        message(
            TOOL, content_pb2.Part(tool_result=content_pb2.ToolResult(tool_call_id="toolu_1", content="21C"))
        ),
        reasoning=chat_pb2.ReasoningOptions(budget_tokens=1024),
    )
    await complete(anthropic_provider, anthropic_fake, fx.message("It is 21C."), follow)
    sent = anthropic_fake.last.body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "The user wants the weather.", "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": REDACTED},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
    }
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"}]


async def test_usage_includes_cache_reads_writes_and_thinking(anthropic_provider, anthropic_fake):
    payload = fx.message("ok", message_usage=usage(100, 300, cache_read=2000, cache_write=500, thinking=120))
    response = await complete(anthropic_provider, anthropic_fake, payload)
    assert response.usage == usage_pb2.Usage(
        input_tokens=2600,  # Anthropic's input_tokens exclude cache reads and writes
        cached_input_tokens=2000,
        cache_write_tokens=500,
        output_tokens=300,
        reasoning_tokens=120,
        total_tokens=2900,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", usage_pb2.FINISH_REASON_STOP),
        ("stop_sequence", usage_pb2.FINISH_REASON_STOP),
        ("max_tokens", usage_pb2.FINISH_REASON_LENGTH),
        ("tool_use", usage_pb2.FINISH_REASON_TOOL_CALLS),
        ("pause_turn", usage_pb2.FINISH_REASON_PAUSE),
        ("refusal", usage_pb2.FINISH_REASON_REFUSAL),
    ],
)
async def test_finish_reasons(anthropic_provider, anthropic_fake, raw, reason):
    stop_sequence = "END" if raw == "stop_sequence" else None
    payload = fx.message("x", stop_reason=raw, stop_sequence=stop_sequence)
    response = await complete(anthropic_provider, anthropic_fake, payload)
    assert (response.finish_reason, response.raw_finish_reason) == (reason, raw)


async def test_refusal_is_a_finish_reason_not_an_error(anthropic_provider, anthropic_fake):
    payload = fx.message("I can't help with that.", stop_reason="refusal")
    payload["stop_details"] = {"type": "refusal", "category": "cyber", "explanation": "Policy."}
    response = await complete(anthropic_provider, anthropic_fake, payload)
    assert response.finish_reason == usage_pb2.FINISH_REASON_REFUSAL
    assert response.message.parts[0].text == "I can't help with that."


async def test_citations_span_their_text_block(anthropic_provider, anthropic_fake):
    char = {
        "type": "char_location",
        "cited_text": "The sky is blue.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 0,
        "end_char_index": 16,
        "file_id": None,
    }
    web = {
        "type": "web_search_result_location",
        "cited_text": "Paris is the capital.",
        "encrypted_index": "Eo8BCioIAhgB",
        "title": "Paris - Wikipedia",
        "url": "https://en.wikipedia.org/wiki/Paris",
    }
    blocks = [
        text_block("According to the doc, "),
        text_block("the sky is blue", [char]),
        text_block(" and ", [web]),
    ]
    response = await complete(anthropic_provider, anthropic_fake, fx.message(blocks))
    assert "".join(p.text for p in response.message.parts) == "According to the doc, the sky is blue and "
    assert list(response.citations) == [
        content_pb2.Citation(
            title="Facts", cited_text="The sky is blue.", start_index=22, end_index=37, source_id="document:0"
        ),
        content_pb2.Citation(
            url="https://en.wikipedia.org/wiki/Paris",
            title="Paris - Wikipedia",
            cited_text="Paris is the capital.",
            start_index=37,
            end_index=42,
        ),
    ]


def test_other_citation_kinds():
    page = {
        "type": "page_location",
        "cited_text": "x",
        "document_index": 2,
        "document_title": None,
        "start_page_number": 1,
        "end_page_number": 2,
        "file_id": "file_011",
    }
    result = {
        "type": "search_result_location",
        "cited_text": "y",
        "search_result_index": 1,
        "source": "https://kb.example.com/a",
        "title": "KB",
        "start_block_index": 0,
        "end_block_index": 1,
    }
    assert citation_from(page, 0, 1) == content_pb2.Citation(
        cited_text="x", source_id="file_011", end_index=1
    )
    assert citation_from(result, 3, 4) == content_pb2.Citation(
        url="https://kb.example.com/a",
        title="KB",
        cited_text="y",
        source_id="https://kb.example.com/a",
        start_index=3,
        end_index=4,
    )


async def test_server_tool_blocks_are_skipped(anthropic_provider, anthropic_fake):
    blocks = [
        {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "x"},
            "caller": {"type": "direct"},
        },
        text_block("Found it."),
    ]
    reply = json_reply(fx.message(blocks))
    reply.validate = False  # server tool blocks carry more required fields than this test needs
    anthropic_fake.enqueue(reply)
    response = await anthropic_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert [p.text for p in response.message.parts] == ["Found it."]


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"type": "error_shape"}', b'{"type": "message", "content": "x"}', b"[]"],
)
async def test_unexpected_bodies_are_protocol_errors(anthropic_provider, anthropic_fake, body):
    anthropic_fake.enqueue(Reply(body=body, validate=False))
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_PROTOCOL_ERROR)


def test_usage_from_tolerates_nulls():
    assert usage_from(
        {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": None}
    ) == usage_pb2.Usage(input_tokens=5, output_tokens=1, total_tokens=6)


def test_parse_message_rejects_non_messages():
    with pytest.raises(GatewayError):
        parse_message("anthropic", {"type": "message", "content": [{"type": "text"}]})


# ---- count_tokens and list_models ----------------------------------------------------------


async def test_count_tokens(anthropic_provider, anthropic_fake):
    tool = content_pb2.Tool(name="get_weather")
    request = chat_pb2.CountTokensRequest(
        model="anthropic/claude-sonnet-4-5",
        messages=[message(content_pb2.ROLE_SYSTEM, "Be brief."), message(USER, "Hello world")],
        tools=[tool],
    )
    anthropic_fake.enqueue(json_reply({"input_tokens": 1234}))
    response = await anthropic_provider.count_tokens(request, call_ctx(MODEL))
    assert response == chat_pb2.CountTokensResponse(input_tokens=1234, exact=True, method="provider")
    assert anthropic_fake.last.path == "/v1/messages/count_tokens"
    assert anthropic_fake.last.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello world"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
    }


async def test_count_tokens_invalid_input_sends_nothing(anthropic_provider, anthropic_fake):
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.count_tokens(chat_pb2.CountTokensRequest(), call_ctx(MODEL))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert anthropic_fake.requests == []


async def test_count_tokens_bad_answer(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(Reply(body=b'{"tokens": 3}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.count_tokens(
            chat_pb2.CountTokensRequest(messages=[message(USER, "x")]), call_ctx(MODEL)
        )
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_list_models_follows_pages(anthropic_provider, anthropic_fake):
    anthropic_fake.max_page_size = 2
    models = await anthropic_provider.list_models()
    assert models == list(fx.DEFAULT_MODELS)
    queries = [r.query for r in anthropic_fake.requests]
    assert queries == [
        {"limit": "1000"},
        {"limit": "1000", "after_id": fx.DEFAULT_MODELS[1]},
        {"limit": "1000", "after_id": fx.DEFAULT_MODELS[3]},
    ]
    assert all(r.headers["x-api-key"] == fx.ANTHROPIC_TEST_KEY for r in anthropic_fake.requests)


async def test_list_models_single_page(anthropic_provider, anthropic_fake):
    assert await anthropic_provider.list_models() == list(fx.DEFAULT_MODELS)
    assert len(anthropic_fake.requests) == 1


async def test_list_models_error(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(fx.error_reply(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(GatewayError) as caught:
        await anthropic_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
