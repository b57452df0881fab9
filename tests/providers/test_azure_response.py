"""Unary responses: Azure completion JSON -> homa CompleteResponse (text, tools, refusals, content
filtering, usage, citations, protocol errors)."""

from __future__ import annotations

import orjson
import pytest

from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import CHOICE_FILTER, Reply, chat_completion, json_reply

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake
azure_provider = fake.azure_provider


async def complete(provider, **fields):
    return await provider.complete_chat(chat_request(**fields), call_ctx("gpt-4o"))


async def test_text_answer(azure_provider, azure_fake):
    response = await complete(azure_provider)
    assert response.id == "chatcmpl-AzFx1"
    assert response.message == content_pb2.Message(
        role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text="Hello there!")]
    )
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "stop"
    assert response.usage == usage_pb2.Usage(input_tokens=61, output_tokens=16, total_tokens=77)
    assert response.create_time.seconds == fake.CREATED
    assert not response.citations


async def test_parallel_tool_calls(azure_provider, azure_fake):
    azure_fake.enqueue(
        json_reply(
            chat_completion(
                None,
                tool_calls=[
                    ("call_a", "get_weather", '{"city":"Paris"}'),
                    ("call_b", "get_time", '{"tz":"CET"}'),
                ],
                finish_reason="tool_calls",
            )
        )
    )
    response = await complete(azure_provider)
    assert [part.tool_call for part in response.message.parts] == [
        content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"tz":"CET"}'),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "tool_calls"


async def test_refusal_is_a_finish_reason(azure_provider, azure_fake):
    azure_fake.enqueue(json_reply(chat_completion(None, refusal="I can't help with that.")))
    response = await complete(azure_provider)
    assert response.message.parts[0].text == "I can't help with that."
    assert response.finish_reason == usage_pb2.FINISH_REASON_REFUSAL
    assert response.raw_finish_reason == "stop"


async def test_filtered_answer_is_a_finish_reason_not_an_error(azure_provider, azure_fake):
    completion = chat_completion(None, finish_reason="content_filter")
    completion["choices"][0]["content_filter_results"] = {
        **CHOICE_FILTER,
        "violence": {"filtered": True, "severity": "high"},
    }
    azure_fake.enqueue(json_reply(completion))
    response = await complete(azure_provider)
    assert response.finish_reason == usage_pb2.FINISH_REASON_CONTENT_FILTER
    assert response.raw_finish_reason == "content_filter"
    assert list(response.message.parts) == []


async def test_length_finish(azure_provider, azure_fake):
    azure_fake.enqueue(json_reply(chat_completion("Once upon", finish_reason="length")))
    response = await complete(azure_provider, max_output_tokens=2)
    assert response.finish_reason == usage_pb2.FINISH_REASON_LENGTH
    assert azure_fake.last.body["max_completion_tokens"] == 2


async def test_usage_with_cached_and_reasoning_tokens(azure_provider, azure_fake):
    usage = {
        "completion_tokens": 300,
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
        "prompt_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "total_tokens": 1500,
    }
    azure_fake.enqueue(json_reply(chat_completion("ok", usage=usage)))
    response = await complete(azure_provider)
    # input includes the cached tokens and output includes the reasoning tokens, as homa defines them
    assert response.usage == usage_pb2.Usage(
        input_tokens=1200,
        cached_input_tokens=1024,
        output_tokens=300,
        reasoning_tokens=256,
        total_tokens=1500,
    )


async def test_on_your_data_citations(azure_provider, azure_fake):
    context = {
        "citations": [
            {
                "content": "Employees get 25 days of vacation.",
                "title": "Benefits handbook",
                "url": "https://contoso.example/handbook",
                "filepath": "handbook.pdf",
                "chunk_id": "0",
            },
            {"content": "Unused days carry over.", "filepath": "faq.md", "chunk_id": "3"},
        ],
        "intent": '["vacation days policy"]',
    }
    azure_fake.enqueue(
        json_reply(chat_completion("You get 25 days [doc1], carried over [doc2].", context=context))
    )
    response = await complete(azure_provider)
    assert list(response.citations) == [
        content_pb2.Citation(
            url="https://contoso.example/handbook",
            title="Benefits handbook",
            cited_text="Employees get 25 days of vacation.",
            start_index=-1,
            end_index=-1,
            source_id="doc1",
        ),
        content_pb2.Citation(
            title="faq.md",
            cited_text="Unused days carry over.",
            start_index=-1,
            end_index=-1,
            source_id="doc2",
        ),
    ]


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad gateway</html>", orjson.dumps({"choices": []}), orjson.dumps({"choices": [{"message": 3}]})],
    ids=["not-json", "no-choices", "wrong-shape"],
)
async def test_malformed_completion_is_a_protocol_error(azure_provider, azure_fake, body):
    azure_fake.enqueue(Reply(body=body, validate=False))
    with pytest.raises(GatewayError) as caught:
        await complete(azure_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert caught.value.code == Code.UNAVAILABLE
