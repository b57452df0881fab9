"""Whole answers: ChatResponseV2 -> homa CompleteResponse (parts, citations, usage, finish), and
model listing across pages."""

from __future__ import annotations

import pytest

from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.cohere.result_mapping import TOOL_PLAN_SIGNATURE
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes.cohere_upstream import (
    MODELS,
    Reply,
    chat_response,
    cohere_settings,
    error_reply,
    json_reply,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

MODEL = "command-a-03-2025"


async def complete(provider: CohereProvider):
    return await provider.complete_chat(chat_request(), call_ctx(MODEL))


async def test_text_answer(cohere_provider, cohere_fake):
    response = await complete(cohere_provider)
    assert response.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert response.message.role == content_pb2.ROLE_ASSISTANT
    assert [p.text for p in response.message.parts] == ["Hello there!"]
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "COMPLETE"
    assert response.usage == usage_pb2.Usage(input_tokens=71, output_tokens=3, total_tokens=74)
    assert not response.HasField("create_time")  # Cohere sends none


async def test_tool_calls_with_plan(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        json_reply(
            chat_response(
                None,
                tool_plan="I will check both cities.",
                tool_calls=[
                    ("c1", "get_weather", '{"city":"Paris"}'),
                    ("c2", "get_weather", '{"city":"Rome"}'),
                ],
                finish_reason="TOOL_CALL",
            )
        )
    )
    response = await complete(cohere_provider)
    assert list(response.message.parts) == [
        content_pb2.Part(
            reasoning=content_pb2.Reasoning(text="I will check both cities.", signature=TOOL_PLAN_SIGNATURE)
        ),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(id="c1", name="get_weather", arguments_json='{"city":"Paris"}')
        ),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(id="c2", name="get_weather", arguments_json='{"city":"Rome"}')
        ),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "TOOL_CALL"


async def test_thinking_becomes_a_leading_reasoning_part(cohere_provider, cohere_fake):
    cohere_fake.enqueue(json_reply(chat_response("4", thinking="2 plus 2 is 4.")))
    response = await complete(cohere_provider)
    assert list(response.message.parts) == [
        content_pb2.Part(reasoning=content_pb2.Reasoning(text="2 plus 2 is 4.")),
        content_pb2.Part(text="4"),
    ]


async def test_usage_with_cached_tokens_uses_tokens_not_billed_units(cohere_provider, cohere_fake):
    usage = {
        "billed_units": {"input_tokens": 18.0, "output_tokens": 6.0},
        "tokens": {"input_tokens": 1661.0, "output_tokens": 19.0},
        "cached_tokens": 1024.0,
    }
    cohere_fake.enqueue(json_reply(chat_response(usage=usage)))
    response = await complete(cohere_provider)
    assert response.usage == usage_pb2.Usage(
        input_tokens=1661, cached_input_tokens=1024, output_tokens=19, total_tokens=1680
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("COMPLETE", usage_pb2.FINISH_REASON_STOP),
        ("STOP_SEQUENCE", usage_pb2.FINISH_REASON_STOP),
        ("MAX_TOKENS", usage_pb2.FINISH_REASON_LENGTH),
        ("TOOL_CALL", usage_pb2.FINISH_REASON_TOOL_CALLS),
    ],
)
async def test_finish_reasons(cohere_provider, cohere_fake, raw, reason):
    cohere_fake.enqueue(json_reply(chat_response(finish_reason=raw)))
    response = await complete(cohere_provider)
    assert (response.finish_reason, response.raw_finish_reason) == (reason, raw)


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        ("ERROR", Code.UNAVAILABLE, Reason.UPSTREAM_ERROR),
        ("TIMEOUT", Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT),
    ],
)
async def test_failed_finish_raises(cohere_provider, cohere_fake, raw, code, reason):
    cohere_fake.enqueue(json_reply(chat_response("partial", finish_reason=raw)))
    with pytest.raises(GatewayError) as caught:
        await complete(cohere_provider)
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (code, reason, True)
    assert error.metadata["upstream_finish_reason"] == raw
    assert error.metadata["upstream_request_id"] == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"


async def test_document_and_tool_citations(cohere_provider, cohere_fake):
    answer = "Both bands were extremely popular. It is 21 degrees."
    citations = [
        {
            "start": 16,
            "end": 33,
            "text": "extremely popular",
            "sources": [
                {
                    "type": "document",
                    "id": "doc_0",
                    "document": {"id": "doc_0", "title": "CSPC", "url": "https://x.io/a"},
                },
                {"type": "document", "id": "doc_1", "document": {"id": "doc_1", "snippet": "..."}},
            ],
            "content_index": 0,
            "type": "TEXT_CONTENT",
        },
        {
            "start": 41,
            "end": 51,
            "text": "21 degrees",
            "sources": [{"type": "tool", "id": "get_weather_fx1:0", "tool_output": {"temp": 21}}],
            "content_index": 0,
        },
    ]
    cohere_fake.enqueue(json_reply(chat_response(answer, citations=citations)))
    response = await complete(cohere_provider)
    assert list(response.citations) == [
        content_pb2.Citation(
            url="https://x.io/a",
            title="CSPC",
            cited_text="extremely popular",
            start_index=16,
            end_index=33,
            source_id="doc_0",
        ),
        content_pb2.Citation(cited_text="extremely popular", start_index=16, end_index=33, source_id="doc_1"),
        content_pb2.Citation(
            cited_text="21 degrees", start_index=41, end_index=51, source_id="get_weather_fx1:0"
        ),
    ]
    assert answer[16:33] == "extremely popular"


async def test_citation_offsets_skip_thinking_blocks_and_plan_citations_have_no_span(
    cohere_provider, cohere_fake
):
    body = chat_response("Paris is sunny.", thinking="Check the tool output.")
    body["message"]["citations"] = [
        {
            "start": 9,
            "end": 14,
            "text": "sunny",
            "sources": [{"type": "tool", "id": "w:0"}],
            "content_index": 1,
        },
        {
            "start": 0,
            "end": 5,
            "text": "Check",
            "sources": [{"type": "tool", "id": "w:0"}],
            "type": "THINKING_CONTENT",
        },
    ]
    cohere_fake.enqueue(json_reply(body))
    response = await complete(cohere_provider)
    assert [(c.start_index, c.end_index) for c in response.citations] == [(9, 14), (-1, -1)]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"not json", validate=False),
        Reply(body=b'{"id": "x", "message": {"role": "assistant"}}', validate=False),
        Reply(
            body=b'{"id": "x", "finish_reason": "COMPLETE", "message": {"content": [{"type": "text"}]}}',
            validate=False,
        ),
    ],
    ids=["not-json", "no-finish-reason", "text-item-without-text"],
)
async def test_malformed_answers_are_protocol_errors(cohere_provider, cohere_fake, reply):
    cohere_fake.enqueue(reply)
    with pytest.raises(GatewayError) as caught:
        await complete(cohere_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert caught.value.retryable


# ---- model listing ---------------------------------------------------------------------------


async def test_list_models_follows_every_page(cohere_fake):
    cohere_fake.models = [f"command-{i}" for i in range(5)]
    provider = CohereProvider(
        "cohere", cohere_settings(cohere_fake.base_url, options={"models_page_size": 2})
    )
    try:
        names = await provider.list_models()
    finally:
        await provider.aclose()
    assert names == [f"command-{i}" for i in range(5)]
    assert [r.query for r in cohere_fake.requests] == [
        {"page_size": "2", "endpoint": "chat"},
        {"page_size": "2", "endpoint": "chat", "page_token": "2"},
        {"page_size": "2", "endpoint": "chat", "page_token": "4"},
    ]
    assert all(r.path == "/v1/models" for r in cohere_fake.requests)


async def test_list_models_default_page_size(cohere_provider, cohere_fake):
    assert await cohere_provider.list_models() == MODELS
    assert cohere_fake.last.query == {"page_size": "1000", "endpoint": "chat"}


async def test_list_models_repeating_token_is_a_protocol_error(cohere_provider, cohere_fake):
    page = {"models": [{"name": "a", "endpoints": ["chat"]}], "next_page_token": "same"}
    cohere_fake.enqueue(json_reply(page), json_reply(page))
    with pytest.raises(GatewayError) as caught:
        await cohere_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_list_models_maps_errors(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(401, "invalid api token"))
    with pytest.raises(GatewayError) as caught:
        await cohere_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED


async def test_an_answer_round_trips_as_the_next_assistant_turn(cohere_provider, cohere_fake):
    """Thinking, the tool plan and the tool calls go back exactly where Cohere put them."""
    cohere_fake.enqueue(
        json_reply(
            chat_response(
                None,
                thinking="The user wants the weather.",
                tool_plan="I will call get_weather.",
                tool_calls=[("c1", "get_weather", '{"city":"Paris"}')],
                finish_reason="TOOL_CALL",
            )
        )
    )
    answer = await complete(cohere_provider)
    follow = chat_request()
    follow.messages.append(answer.message)
    follow.messages.add(role=content_pb2.ROLE_TOOL).parts.add(
        tool_result=content_pb2.ToolResult(tool_call_id="c1", content='{"temp_c": 21}')
    )
    await cohere_provider.complete_chat(follow, call_ctx(MODEL))
    assert cohere_fake.last.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "The user wants the weather."}],
            "tool_plan": "I will call get_weather.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
    ]
