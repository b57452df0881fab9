"""Converse responses -> homa responses (through the fake), token counting and model listing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.bedrock.chat_response import usage_from
from tests.providers.conftest import call_ctx, chat_request, message
from tests.providers.fakes.bedrock_upstream import (
    MODEL,
    USAGE,
    FakeBedrock,
    Reply,
    bedrock_settings,
    checked_fake,
    converse_response,
    json_reply,
    running_fake,
)
from tests.strategies import PNG_1X1


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


async def complete(
    provider: BedrockProvider, fake: FakeBedrock, payload: dict[str, Any]
) -> chat_pb2.CompleteResponse:
    fake.enqueue(json_reply(payload))
    return await provider.complete_chat(chat_request(), call_ctx(MODEL))


def test_capabilities(provider):
    assert isinstance(provider, ChatProvider)
    assert isinstance(provider, TokenCountingProvider)
    assert isinstance(provider, ModelListingProvider)
    assert (provider.name, provider.kind) == ("bedrock", "bedrock")


async def test_text_answer(provider, fake):
    response = await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert response.message == message(content_pb2.ROLE_ASSISTANT, "Hello there!")
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "end_turn"
    assert response.usage == usage_pb2.Usage(input_tokens=25, output_tokens=12, total_tokens=37)
    assert response.id == "00000001-0000-4000-8000-000000000001"  # the x-amzn-RequestId


async def test_tool_use_answer(provider, fake):
    blocks = [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time", "input": {}}},
    ]
    response = await complete(provider, fake, converse_response(blocks, stop_reason="tool_use"))
    assert list(response.message.parts) == [
        content_pb2.Part(text="Let me check."),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(
                id="tooluse_a", name="get_weather", arguments_json='{"city":"Paris"}'
            )
        ),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(id="tooluse_b", name="get_time", arguments_json="{}")
        ),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS


async def test_reasoning_and_signature_are_returned(provider, fake):
    blocks = [
        {
            "reasoningContent": {
                "reasoningText": {"text": "The user wants 4.", "signature": "EqQBCkgIARABGAIiQ=="}
            }
        },
        {"reasoningContent": {"redactedContent": "AP9vcGFxdWU="}},
        {"text": "4"},
    ]
    response = await complete(provider, fake, converse_response(blocks))
    assert [p.reasoning for p in response.message.parts[:2]] == [
        content_pb2.Reasoning(text="The user wants 4.", signature=b"EqQBCkgIARABGAIiQ=="),
        content_pb2.Reasoning(signature=b"\x00\xffopaque", redacted=True),
    ]
    assert response.message.parts[2].text == "4"


async def test_reasoning_signature_round_trips_on_the_next_turn(provider, fake):
    blocks = [
        {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig-123=="}}},
        {"reasoningContent": {"redactedContent": "AP9vcGFxdWU="}},
        {"text": "Answer."},
    ]
    first = await complete(provider, fake, converse_response(blocks))
    follow = chat_request(
        message(content_pb2.ROLE_USER, "Q"), first.message, message(content_pb2.ROLE_USER, "More?")
    )
    await provider.complete_chat(follow, call_ctx(MODEL))
    assert fake.last.body["messages"][1]["content"] == blocks


async def test_citations(provider, fake):
    blocks = [
        {"text": "Revenue grew. "},
        {
            "citationsContent": {
                "content": [{"text": "It rose 12%."}],
                "citations": [
                    {
                        "title": "Q3 report",
                        "sourceContent": [{"text": "revenue increased by 12%"}],
                        "location": {"documentChar": {"documentIndex": 0, "start": 10, "end": 34}},
                    },
                    {
                        "title": "News",
                        "source": "https://example.com/q3",
                        "location": {"web": {"url": "https://example.com/q3", "domain": "example.com"}},
                    },
                ],
            }
        },
    ]
    response = await complete(provider, fake, converse_response(blocks))
    assert [p.text for p in response.message.parts] == ["Revenue grew. ", "It rose 12%."]
    assert list(response.citations) == [
        content_pb2.Citation(
            title="Q3 report",
            cited_text="revenue increased by 12%",
            start_index=14,
            end_index=26,
            source_id="document:0",
        ),
        content_pb2.Citation(title="News", url="https://example.com/q3", start_index=14, end_index=26),
    ]


async def test_generated_image_becomes_inline_data(provider, fake):
    image = {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG_1X1).decode()}}}
    response = await complete(provider, fake, converse_response([image]))
    assert response.message.parts[0].inline_data == content_pb2.InlineData(
        mime_type="image/png", data=PNG_1X1
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", usage_pb2.FINISH_REASON_STOP),
        ("stop_sequence", usage_pb2.FINISH_REASON_STOP),
        ("max_tokens", usage_pb2.FINISH_REASON_LENGTH),
        ("model_context_window_exceeded", usage_pb2.FINISH_REASON_LENGTH),
        ("tool_use", usage_pb2.FINISH_REASON_TOOL_CALLS),
        ("guardrail_intervened", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("content_filtered", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("malformed_model_output", usage_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_finish_reasons(provider, fake, raw, reason):
    response = await complete(provider, fake, converse_response(stop_reason=raw))
    assert (response.finish_reason, response.raw_finish_reason) == (reason, raw)


async def test_guardrail_block_is_a_finish_reason_not_an_error(provider, fake):
    blocked = converse_response(
        [{"text": "Sorry, I can't help with that."}], stop_reason="guardrail_intervened"
    )
    response = await complete(provider, fake, blocked)
    assert response.finish_reason == usage_pb2.FINISH_REASON_CONTENT_FILTER
    assert response.message.parts[0].text == "Sorry, I can't help with that."


async def test_usage_with_prompt_cache(provider, fake):
    usage = {
        "inputTokens": 100,
        "outputTokens": 50,
        "totalTokens": 2150,
        "cacheReadInputTokens": 1500,
        "cacheWriteInputTokens": 500,
    }
    response = await complete(provider, fake, converse_response(usage=usage))
    assert response.usage == usage_pb2.Usage(
        input_tokens=2100,
        cached_input_tokens=1500,
        cache_write_tokens=500,
        output_tokens=50,
        total_tokens=2150,
    )


def test_usage_without_cache_fields():
    assert usage_from(USAGE) == usage_pb2.Usage(input_tokens=25, output_tokens=12, total_tokens=37)


@pytest.mark.parametrize(
    "payload",
    [
        {"output": {}},
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [{"image": {"format": "png", "source": {"bytes": "!"}}}],
                }
            },
            "stopReason": "end_turn",
        },
    ],
    ids=["no-message", "bad-base64"],
)
async def test_malformed_response_is_a_protocol_error(provider, fake, payload):
    fake.enqueue(Reply(body=orjson.dumps(payload), validate=False))
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_non_json_response_is_a_protocol_error(provider, fake):
    fake.enqueue(Reply(body=b"<html>gateway</html>", content_type="text/html", validate=False))
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_connection_is_reused(provider, fake):
    for _ in range(3):
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert len({r.client_port for r in fake.requests}) == 1


# ---- token counting -------------------------------------------------------------------------------


async def test_count_tokens(provider, fake):
    fake.enqueue(json_reply({"inputTokens": 42}))
    request = chat_pb2.CountTokensRequest(
        model="bedrock/x", messages=[message(content_pb2.ROLE_USER, "hello")]
    )
    response = await provider.count_tokens(request, call_ctx(MODEL))
    assert response == chat_pb2.CountTokensResponse(input_tokens=42, exact=True, method="provider")
    assert fake.last.path.endswith("/count-tokens")
    assert fake.last.body == {
        "input": {"converse": {"messages": [{"role": "user", "content": [{"text": "hello"}]}]}}
    }


async def test_count_tokens_without_a_count_is_a_protocol_error(provider, fake):
    fake.enqueue(Reply(body=b'{"inputTokens": "many"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await provider.count_tokens(
            chat_pb2.CountTokensRequest(messages=[message(content_pb2.ROLE_USER, "x")]), call_ctx(MODEL)
        )
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


# ---- model listing ----------------------------------------------------------------------------------


async def test_list_models_follows_inference_profile_pages(provider, fake):
    models = await provider.list_models()
    assert models == [
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "us.amazon.nova-pro-v1:0",
        "us.meta.llama3-2-90b-instruct-v1:0",
    ]
    calls = [(r.method, r.action, r.query) for r in fake.requests]
    assert calls == [
        ("GET", "foundation-models", "byOutputModality=TEXT"),
        ("GET", "inference-profiles", "type=SYSTEM_DEFINED&maxResults=1000"),
        ("GET", "inference-profiles", "type=SYSTEM_DEFINED&maxResults=1000&nextToken=2"),
    ]
    assert all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256") for r in fake.requests)


async def test_list_models_without_inference_profiles(fake):
    adapter = BedrockProvider("bedrock", bedrock_settings(fake, options={"list_inference_profiles": False}))
    try:
        assert len(await adapter.list_models()) == 3
    finally:
        await adapter.aclose()
    assert [r.action for r in fake.requests] == ["foundation-models"]


async def test_list_models_error_is_mapped(provider, fake):
    fake.enqueue(
        json_reply(
            {"message": "Rate exceeded"},
            429,
            {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"},
        )
    )
    with pytest.raises(GatewayError) as caught:
        await provider.list_models()
    assert caught.value.code == Code.RESOURCE_EXHAUSTED


async def test_list_models_with_a_wrong_shape_is_a_protocol_error(provider, fake):
    fake.enqueue(Reply(body=b'{"models": []}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
