"""OpenAI responses -> homa responses (unary chat, token counting, model listing, compatible servers)."""

from __future__ import annotations

import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.openai import OpenAIProvider
from tests.providers.conftest import call_ctx, chat_request, message, openai_settings
from tests.providers.fakes.openai_upstream import USAGE, FakeOpenAI, Reply, chat_completion, json_reply


async def test_provider_implements_the_capability_protocols(openai_provider):
    assert isinstance(openai_provider, ChatProvider)
    assert isinstance(openai_provider, TokenCountingProvider)
    assert isinstance(openai_provider, ModelListingProvider)
    assert openai_provider.name == "openai"
    assert openai_provider.kind == "openai"


async def test_text_answer(openai_provider, openai_fake):
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert response.id == "chatcmpl-fx1"
    assert response.message == content_pb2.Message(
        role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text="Hello there!")]
    )
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "stop"
    assert response.usage == usage_pb2.Usage(input_tokens=61, output_tokens=16, total_tokens=77)
    assert response.create_time.seconds == 1700000000
    assert not response.HasField("route")  # the gateway fills it in


async def test_tool_call_answer(openai_provider, openai_fake):
    openai_fake.enqueue(
        json_reply(
            chat_completion(
                None,
                tool_calls=[("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "get_time", "{}")],
                finish_reason="tool_calls",
            )
        )
    )
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert [p.tool_call for p in response.message.parts] == [
        content_pb2.ToolCall(id="call_1", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_2", name="get_time", arguments_json="{}"),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "tool_calls"


async def test_refusal_becomes_text_with_refusal_finish(openai_provider, openai_fake):
    openai_fake.enqueue(json_reply(chat_completion(None, refusal="I can't help with that.")))
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert [p.text for p in response.message.parts] == ["I can't help with that."]
    assert response.finish_reason == usage_pb2.FINISH_REASON_REFUSAL
    assert response.raw_finish_reason == "stop"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("length", usage_pb2.FINISH_REASON_LENGTH),
        ("content_filter", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("function_call", usage_pb2.FINISH_REASON_TOOL_CALLS),
    ],
)
async def test_finish_reasons(openai_provider, openai_fake, raw, expected):
    openai_fake.enqueue(json_reply(chat_completion("partial", finish_reason=raw)))
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert response.finish_reason == expected
    assert response.raw_finish_reason == raw


async def test_usage_details(openai_provider, openai_fake):
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 500,
        "total_tokens": 2500,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0, "cache_write_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 448, "audio_tokens": 0},
    }
    openai_fake.enqueue(json_reply(chat_completion(usage=usage)))
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert response.usage == usage_pb2.Usage(
        input_tokens=2000,
        cached_input_tokens=1536,
        cache_write_tokens=64,
        output_tokens=500,
        reasoning_tokens=448,
        total_tokens=2500,
    )


async def test_malformed_json_body_is_a_protocol_error(openai_provider, openai_fake):
    openai_fake.enqueue(Reply(body=b'{"id": "chatcmpl', validate=False))
    with pytest.raises(GatewayError) as caught:
        await openai_provider.complete_chat(chat_request(), call_ctx())
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert caught.value.code == Code.UNAVAILABLE


async def test_wrong_shape_is_a_protocol_error(openai_provider, openai_fake):
    openai_fake.enqueue(Reply(body=b'{"id": "x", "choices": []}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await openai_provider.complete_chat(chat_request(), call_ctx())
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_slow_answer_past_the_deadline_is_upstream_timeout(openai_provider, openai_fake):
    openai_fake.enqueue(Reply(body=b"{}", delay=3.0, validate=False))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await openai_provider.complete_chat(chat_request(), call_ctx(deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT
    assert caught.value.retryable


async def test_spent_deadline_fails_before_any_request(openai_provider, openai_fake):
    with pytest.raises(GatewayError) as caught:
        await openai_provider.complete_chat(chat_request(), call_ctx(deadline=time.monotonic() - 1))
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert openai_fake.requests == []


async def test_compatible_server_without_api_key_sends_no_authorization(openai_fake):
    openai_fake.require_auth = False
    settings = openai_settings(
        openai_fake.base_url,
        kind="openai_compatible",
        api_key=None,
        organization=None,
        project=None,
        headers={"X-Tenant": "blue", "User-Agent": "custom-agent"},
    )
    provider = OpenAIProvider("local-vllm", settings)
    try:
        response = await provider.complete_chat(chat_request(), call_ctx("meta-llama/Llama-3.1-8B"))
    finally:
        await provider.aclose()
    assert response.message.parts[0].text == "Hello there!"
    headers = openai_fake.last.headers
    assert "authorization" not in headers
    assert "openai-organization" not in headers
    assert headers["x-tenant"] == "blue"
    assert headers["user-agent"] == "custom-agent"
    assert openai_fake.last.body["model"] == "meta-llama/Llama-3.1-8B"
    assert provider.kind == "openai_compatible"


async def test_compatible_server_reasoning_content_becomes_reasoning_part(openai_provider, openai_fake):
    completion = chat_completion("42")
    completion["choices"][0]["message"]["reasoning_content"] = "6 times 7"
    openai_fake.enqueue(Reply(body=json_reply(completion).body, validate=False))  # not an OpenAI field
    response = await openai_provider.complete_chat(chat_request(), call_ctx())
    assert response.message.parts[0].reasoning.text == "6 times 7"
    assert response.message.parts[1].text == "42"


# ---- count_tokens --------------------------------------------------------------------------


async def test_count_tokens_sends_responses_input_and_returns_exact_count(openai_provider, openai_fake):
    openai_fake.enqueue(json_reply({"object": "response.input_tokens", "input_tokens": 123}))
    request = chat_pb2.CountTokensRequest(
        model="openai/gpt-4o-mini",
        messages=[
            message(content_pb2.ROLE_SYSTEM, "Be brief."),
            message(
                content_pb2.ROLE_USER,
                "What is on this image?",
                content_pb2.Part(
                    inline_data=content_pb2.InlineData(
                        mime_type="image/png", data=b"png", detail=content_pb2.IMAGE_DETAIL_LOW
                    )
                ),
                content_pb2.Part(file_uri=content_pb2.FileUri(uri="https://example.com/a.png")),
                content_pb2.Part(
                    document=content_pb2.Document(mime_type="application/pdf", uri="https://x.test/a.pdf")
                ),
            ),
            message(
                content_pb2.ROLE_ASSISTANT,
                "Checking.",
                content_pb2.Part(
                    tool_call=content_pb2.ToolCall(id="call_1", name="lookup", arguments_json="{}")
                ),
            ),
            message(
                content_pb2.ROLE_TOOL,
                content_pb2.Part(tool_result=content_pb2.ToolResult(tool_call_id="call_1", content="a cat")),
            ),
        ],
        tools=[
            content_pb2.Tool(
                name="lookup", description="Look up", parameters=dict_to_struct({"type": "object"})
            )
        ],
    )
    response = await openai_provider.count_tokens(request, call_ctx())
    assert response == chat_pb2.CountTokensResponse(input_tokens=123, exact=True, method="provider")
    assert openai_fake.last.path == "/v1/responses/input_tokens"
    assert openai_fake.last.body == {
        "model": "gpt-4o-mini",
        "input": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is on this image?"},
                    {"type": "input_image", "detail": "low", "image_url": "data:image/png;base64,cG5n"},
                    {"type": "input_image", "detail": "auto", "image_url": "https://example.com/a.png"},
                    {"type": "input_file", "file_url": "https://x.test/a.pdf"},
                ],
            },
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object"},
                "strict": False,
            }
        ],
    }


async def test_count_tokens_rejects_invalid_input_locally(openai_provider, openai_fake):
    with pytest.raises(GatewayError) as caught:
        await openai_provider.count_tokens(chat_pb2.CountTokensRequest(model="m"), call_ctx())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert openai_fake.requests == []


async def test_count_tokens_on_a_server_without_the_endpoint(openai_fake):
    # An OpenAI-compatible server that lacks /responses/input_tokens answers 404.
    openai_fake.enqueue(
        json_reply(
            {"error": {"message": "Not Found", "type": "invalid_request_error", "param": None, "code": None}},
            404,
        )
    )
    provider = OpenAIProvider("compat", openai_settings(openai_fake.base_url))
    try:
        with pytest.raises(GatewayError) as caught:
            await provider.count_tokens(
                chat_pb2.CountTokensRequest(messages=[message(content_pb2.ROLE_USER, "x")]), call_ctx()
            )
    finally:
        await provider.aclose()
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.reason == Reason.UPSTREAM_NOT_FOUND


# ---- list_models ---------------------------------------------------------------------------


async def test_list_models(openai_provider: OpenAIProvider, openai_fake: FakeOpenAI):
    models = await openai_provider.list_models()
    assert models[:2] == ["gpt-4o-mini", "gpt-4o"]
    assert openai_fake.last.method == "GET"
    assert openai_fake.last.path == "/v1/models"


async def test_list_models_maps_errors(openai_provider, openai_fake):
    openai_fake.enqueue(
        json_reply(
            {
                "error": {
                    "message": "bad key",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            401,
        )
    )
    with pytest.raises(GatewayError) as caught:
        await openai_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED


async def test_usage_constant_matches_fake(openai_provider, openai_fake):
    # Guard: the fake's default usage is what the streaming tests expect.
    assert USAGE["total_tokens"] == 77
