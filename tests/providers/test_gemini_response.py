"""Gemini GenerateContentResponse -> homa CompleteResponse: parts, thought signatures (and their
round trip into the next request), tool calls, usage, finish reasons, citations, blocked prompts."""

from __future__ import annotations

import base64

import orjson
import pytest

from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from tests.providers.conftest import chat_request, message
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    Reply,
    function_call_part,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_upstream_fixture,
    json_reply,
    response_json,
)

PNG = b"\x89PNG\r\n\x1a\n generated"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def complete(provider, fake, payload):
    fake.enqueue(json_reply(payload))
    return await provider.complete_chat(chat_request(), gemini_ctx())


async def test_text_answer(gemini_provider, gemini_fake):
    response = await gemini_provider.complete_chat(chat_request(), gemini_ctx())
    assert response.id == "fx-resp-1"
    assert response.message == content_pb2.Message(
        role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text="Hello there!")]
    )
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "STOP"
    assert response.usage == usage_pb2.Usage(input_tokens=12, output_tokens=9, total_tokens=21)


async def test_thoughts_signatures_and_tool_calls(gemini_provider, gemini_fake):
    payload = response_json(
        [
            {"text": "Let me think.", "thought": True, "thoughtSignature": b64(b"sig-thought")},
            {"text": "I will check.", "thoughtSignature": b64(b"sig-text")},
            function_call_part("get_weather", {"city": "Paris"}, signature=b64(b"sig-call")),
            function_call_part("get_time", {"tz": "CET"}, call_id="gemini-id-7"),
            function_call_part("get_date", {}),
        ]
    )
    response = await complete(gemini_provider, gemini_fake, payload)
    assert list(response.message.parts) == [
        content_pb2.Part(reasoning=content_pb2.Reasoning(text="Let me think.", signature=b"sig-thought")),
        content_pb2.Part(reasoning=content_pb2.Reasoning(signature=b"sig-text")),
        content_pb2.Part(text="I will check."),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(
                id="call_0", name="get_weather", arguments_json='{"city":"Paris"}', signature=b"sig-call"
            )
        ),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(id="gemini-id-7", name="get_time", arguments_json='{"tz":"CET"}')
        ),
        content_pb2.Part(tool_call=content_pb2.ToolCall(id="call_2", name="get_date", arguments_json="{}")),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "STOP"


async def test_signatures_round_trip_unchanged_on_the_next_turn(gemini_provider, gemini_fake):
    """The signed parts Gemini returned come back on the same parts, byte for byte."""
    returned = [
        {"text": "Plan: call the tool.", "thought": True, "thoughtSignature": b64(b"\x00\x01thought")},
        {"text": "Checking the weather.", "thoughtSignature": b64(b"\xfftext")},
        function_call_part("get_weather", {"city": "Paris"}, signature=b64(b"\x10call")),
        {"text": "", "thoughtSignature": b64(b"trailing")},
    ]
    first = await complete(gemini_provider, gemini_fake, response_json(returned))
    follow = chat_request(
        message(content_pb2.ROLE_USER, "Weather in Paris?"),
        first.message,
        message(
            content_pb2.ROLE_TOOL,
            content_pb2.Part(
                tool_result=content_pb2.ToolResult(tool_call_id="call_0", content='{"temp_c": 21}')
            ),
        ),
        tools=[content_pb2.Tool(name="get_weather")],
    )
    await gemini_provider.complete_chat(follow, gemini_ctx())
    sent = gemini_fake.last.body["contents"]
    expected = [dict(part) for part in returned]
    expected[2] = {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0"},
        "thoughtSignature": b64(b"\x10call"),
    }
    assert sent[1] == {"role": "model", "parts": expected}
    assert sent[2]["parts"][0]["functionResponse"] == {
        "id": "call_0",
        "name": "get_weather",
        "response": {"temp_c": 21},
    }


async def test_generated_image_is_inline_data(gemini_provider, gemini_fake):
    payload = response_json(
        [
            {"text": "Here it is."},
            {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}, "thoughtSignature": b64(b"s")},
        ]
    )
    response = await complete(gemini_provider, gemini_fake, payload)
    assert list(response.message.parts) == [
        content_pb2.Part(text="Here it is."),
        content_pb2.Part(reasoning=content_pb2.Reasoning(signature=b"s")),
        content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG)),
    ]


async def test_usage_with_cache_thoughts_and_tool_use_prompt(gemini_provider, gemini_fake):
    usage = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1024,
        "candidatesTokenCount": 300,
        "toolUsePromptTokenCount": 50,
        "thoughtsTokenCount": 256,
        "totalTokenCount": 1806,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
    }
    response = await complete(gemini_provider, gemini_fake, response_json(usage=usage))
    assert response.usage == usage_pb2.Usage(
        input_tokens=1250,
        cached_input_tokens=1024,
        output_tokens=556,
        reasoning_tokens=256,
        total_tokens=1806,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("STOP", usage_pb2.FINISH_REASON_STOP),
        ("MAX_TOKENS", usage_pb2.FINISH_REASON_LENGTH),
        ("SAFETY", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("RECITATION", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("LANGUAGE", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("BLOCKLIST", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("PROHIBITED_CONTENT", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("SPII", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("IMAGE_SAFETY", usage_pb2.FINISH_REASON_CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", usage_pb2.FINISH_REASON_UNSPECIFIED),
        ("UNEXPECTED_TOOL_CALL", usage_pb2.FINISH_REASON_UNSPECIFIED),
        ("TOO_MANY_TOOL_CALLS", usage_pb2.FINISH_REASON_UNSPECIFIED),
        ("OTHER", usage_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_finish_reasons_keep_the_raw_value(gemini_provider, gemini_fake, raw, expected):
    response = await complete(gemini_provider, gemini_fake, response_json(finish_reason=raw))
    assert response.finish_reason == expected
    assert response.raw_finish_reason == raw


async def test_filtered_answer_without_content(gemini_provider, gemini_fake):
    payload = {
        "candidates": [
            {
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                ],
            }
        ],
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fx-filtered",
    }
    response = await complete(gemini_provider, gemini_fake, payload)
    assert list(response.message.parts) == []
    assert response.finish_reason == usage_pb2.FINISH_REASON_CONTENT_FILTER
    assert response.usage.input_tokens == 8


async def test_blocked_prompt_is_content_filtered(gemini_provider, gemini_fake):
    payload = {
        "promptFeedback": {
            "blockReason": "PROHIBITED_CONTENT",
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
        },
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fx-blocked",
    }
    with pytest.raises(GatewayError) as caught:
        await complete(gemini_provider, gemini_fake, payload)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.CONTENT_FILTERED
    assert caught.value.metadata["block_reason"] == "PROHIBITED_CONTENT"


async def test_citation_metadata_offsets_become_characters(gemini_provider, gemini_fake):
    text = "Café au lait: a recipe."  # "é" is two bytes in UTF-8
    start_byte = len("Café ".encode())
    payload = response_json(
        [{"text": text}],
        citationMetadata={
            "citationSources": [
                {
                    "startIndex": start_byte,
                    "endIndex": len(text.encode()),
                    "uri": "https://example.com/cafe",
                    "license": "mit",
                },
                {"endIndex": 4, "uri": "https://example.com/start"},
            ]
        },
    )
    response = await complete(gemini_provider, gemini_fake, payload)
    assert list(response.citations) == [
        content_pb2.Citation(url="https://example.com/cafe", start_index=5, end_index=len(text)),
        content_pb2.Citation(url="https://example.com/start", start_index=0, end_index=3),
    ]


async def test_grounding_metadata(gemini_provider, gemini_fake):
    payload = response_json(
        [{"text": "Thinking", "thought": True}, {"text": "Spain won Euro 2024. "}, {"text": "Final: 2-1."}],
        groundingMetadata={
            "webSearchQueries": ["euro 2024 winner"],
            "groundingChunks": [
                {"web": {"uri": "https://www.uefa.com/euro2024", "title": "uefa.com"}},
                {"web": {"uri": "https://www.bbc.com/sport", "title": "bbc.com"}},
                {
                    "retrievedContext": {
                        "uri": "gs://docs/report.pdf",
                        "title": "Report",
                        "text": "Spain 2-1 England",
                    }
                },
            ],
            "groundingSupports": [
                {
                    "segment": {
                        "partIndex": 1,
                        "startIndex": 0,
                        "endIndex": 20,
                        "text": "Spain won Euro 2024.",
                    },
                    "groundingChunkIndices": [0, 1],
                    "confidenceScores": [0.9, 0.8],
                },
                {
                    "segment": {"partIndex": 2, "endIndex": 11, "text": "Final: 2-1."},
                    "groundingChunkIndices": [2, 9],
                },
            ],
        },
    )
    response = await complete(gemini_provider, gemini_fake, payload)
    offset = len("Spain won Euro 2024. ")
    assert list(response.citations) == [
        content_pb2.Citation(
            url="https://www.uefa.com/euro2024", title="uefa.com", start_index=0, end_index=20, source_id="0"
        ),
        content_pb2.Citation(
            url="https://www.bbc.com/sport", title="bbc.com", start_index=0, end_index=20, source_id="1"
        ),
        content_pb2.Citation(
            url="gs://docs/report.pdf",
            title="Report",
            cited_text="Spain 2-1 England",
            start_index=offset,
            end_index=offset + 11,
            source_id="2",
        ),
    ]


async def test_unreferenced_grounding_chunks_are_cited_without_a_span(gemini_provider, gemini_fake):
    payload = response_json(
        [{"text": "Answer."}],
        groundingMetadata={"groundingChunks": [{"web": {"uri": "https://a.example", "title": "a"}}]},
    )
    response = await complete(gemini_provider, gemini_fake, payload)
    assert list(response.citations) == [
        content_pb2.Citation(url="https://a.example", title="a", start_index=-1, end_index=-1, source_id="0")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"candidates": []}',
        b'{"candidates": [{"content": {"parts": [{"functionCall": {}}]}}]}',
    ],
    ids=["not-json", "array", "no-candidates", "call-without-name"],
)
async def test_malformed_answers_are_protocol_errors(gemini_provider, gemini_fake, body):
    gemini_fake.enqueue(Reply(body=body, validate=False))
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.complete_chat(chat_request(), gemini_ctx())
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert caught.value.retryable


async def test_bad_signature_base64_is_a_protocol_error(gemini_provider, gemini_fake):
    payload = response_json([{"text": "x", "thoughtSignature": "@@not base64@@"}])
    gemini_fake.enqueue(Reply(body=orjson.dumps(payload), validate=False))
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.complete_chat(chat_request(), gemini_ctx())
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
