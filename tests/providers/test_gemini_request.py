"""homa request -> Gemini GenerateContentRequest, asserted on what the fake upstream received.

Every request here is also validated by the fake (proto, discovery document and semantics); the
`gemini_fake` fixture fails the test on any violation.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.gemini import GeminiProvider
from homa_server.settings import ProviderSettings
from tests.providers.conftest import chat_request, collect, message
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    TEST_KEY,
    FakeGemini,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_settings,
    gemini_upstream_fixture,
)

SYSTEM, DEVELOPER, USER, ASSISTANT, TOOL = (
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_TOOL,
)
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PDF = b"%PDF-1.7 fake pdf bytes"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def part(**kind: Any) -> content_pb2.Part:
    return content_pb2.Part(**kind)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def weather_tool(**fields: Any) -> content_pb2.Tool:
    return content_pb2.Tool(
        name="get_weather", description="Current weather", parameters=dict_to_struct(WEATHER_SCHEMA), **fields
    )


async def sent_body(provider: GeminiProvider, fake: FakeGemini, request: chat_pb2.CompleteRequest) -> Any:
    await provider.complete_chat(request, gemini_ctx())
    assert len(fake.requests) == 1
    return fake.last.body


async def rejected(
    provider: GeminiProvider, fake: FakeGemini, request: chat_pb2.CompleteRequest
) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(request, gemini_ctx())
    with pytest.raises(GatewayError) as streamed:
        await collect(provider.stream_chat(request, gemini_ctx()))
    assert streamed.value.field_violations == caught.value.field_violations
    assert fake.requests == []
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    return caught.value


# ---- endpoint and authentication --------------------------------------------------------------


async def test_endpoint_headers_and_minimal_body(gemini_provider, gemini_fake):
    body = await sent_body(gemini_provider, gemini_fake, chat_request())
    record = gemini_fake.last
    assert record.method == "POST"
    assert record.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert record.query == {}
    assert record.headers["x-goog-api-key"] == TEST_KEY
    assert "authorization" not in record.headers
    assert record.headers["content-type"] == "application/json"
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


async def test_stream_uses_alt_sse(gemini_provider, gemini_fake):
    await collect(gemini_provider.stream_chat(chat_request(), gemini_ctx()))
    record = gemini_fake.last
    assert record.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert record.query == {"alt": "sse"}
    assert record.headers["x-goog-api-key"] == TEST_KEY


async def test_qualified_and_tuned_model_names(gemini_provider, gemini_fake):
    await gemini_provider.complete_chat(chat_request(), gemini_ctx("models/gemini-2.5-pro"))
    assert gemini_fake.last.path == "/v1beta/models/gemini-2.5-pro:generateContent"


@pytest.mark.parametrize("model", ["../files/x", "gemini?x=1", "a/b", "gemini-2.5-flash:countTokens", ""])
async def test_model_ids_that_would_change_the_url_are_rejected(gemini_provider, gemini_fake, model):
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.complete_chat(chat_request(), gemini_ctx(model))
    assert caught.value.field_violations[0].field == "model"
    assert gemini_fake.requests == []


async def test_extra_headers_from_settings(gemini_fake):
    provider = GeminiProvider("gemini", gemini_settings(gemini_fake.base_url, headers={"X-Team": "search"}))
    try:
        await provider.complete_chat(chat_request(), gemini_ctx())
    finally:
        await provider.aclose()
    assert gemini_fake.last.headers["x-team"] == "search"


# ---- messages ----------------------------------------------------------------------------------


async def test_system_and_developer_become_system_instruction(gemini_provider, gemini_fake):
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(USER, "Hi", name="alice"),
        message(DEVELOPER, "Answer in English.", "Use metric units."),
        message(ASSISTANT, "Hello!"),
        message(USER, "Weather?"),
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body == {
        "systemInstruction": {
            "parts": [{"text": "Be brief."}, {"text": "Answer in English."}, {"text": "Use metric units."}]
        },
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Weather?"}]},
        ],
    }


async def test_images_pdfs_documents_and_uris(gemini_provider, gemini_fake):
    request = chat_request(
        message(
            USER,
            "Compare these.",
            part(
                inline_data=content_pb2.InlineData(
                    mime_type="image/png", data=PNG, detail=content_pb2.IMAGE_DETAIL_HIGH
                )
            ),
            part(
                file_uri=content_pb2.FileUri(
                    uri="https://generativelanguage.googleapis.com/v1beta/files/abc", mime_type="video/mp4"
                )
            ),
            part(file_uri=content_pb2.FileUri(uri="https://www.youtube.com/watch?v=9hE5-98ZeCg")),
            part(document=content_pb2.Document(mime_type="application/pdf", data=PDF, title="Report")),
            part(document=content_pb2.Document(mime_type="application/pdf", uri="gs://bucket/report.pdf")),
            part(document=content_pb2.Document(mime_type="text/plain", data=b"plain notes")),
            part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF")),
        )
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["contents"][0]["parts"] == [
        {"text": "Compare these."},
        {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
        {
            "fileData": {
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                "mimeType": "video/mp4",
            }
        },
        {"fileData": {"fileUri": "https://www.youtube.com/watch?v=9hE5-98ZeCg"}},
        {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/report.pdf"}},
        {"inlineData": {"mimeType": "text/plain", "data": b64(b"plain notes")}},
        {"inlineData": {"mimeType": "audio/wav", "data": b64(b"RIFF")}},
    ]


async def test_tool_round_trip_with_ids_names_and_signatures(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(
            ASSISTANT,
            part(
                tool_call=content_pb2.ToolCall(
                    id="call_0", name="get_weather", arguments_json='{"city": "Paris"}', signature=b"sig-1"
                )
            ),
            part(
                tool_call=content_pb2.ToolCall(
                    id="call_1", name="get_weather", arguments_json='{"city":"Rome"}'
                )
            ),
        ),
        message(
            TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="call_0", content='{"temp_c": 21}'))
        ),
        message(
            TOOL,
            part(
                tool_result=content_pb2.ToolResult(tool_call_id="call_1", name="get_weather", content="sunny")
            ),
        ),
        tools=[weather_tool()],
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0"},
                    "thoughtSignature": b64(b"sig-1"),
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_1"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "call_0", "name": "get_weather", "response": {"temp_c": 21}}},
                {
                    "functionResponse": {
                        "id": "call_1",
                        "name": "get_weather",
                        "response": {"output": "sunny"},
                    }
                },
            ],
        },
    ]


@pytest.mark.parametrize(
    ("content", "is_error", "expected"),
    [
        ('{"a": 1}', False, {"a": 1}),
        ("[1, 2]", False, {"output": [1, 2]}),
        ("42", False, {"output": 42}),
        ("plain text", False, {"output": "plain text"}),
        ("true story", False, {"output": "true story"}),
        ("", False, {"output": ""}),
        ("city not found", True, {"error": "city not found"}),
        ('{"code": 404}', True, {"error": {"code": 404}}),
    ],
)
async def test_function_response_objects(gemini_provider, gemini_fake, content, is_error, expected):
    request = chat_request(
        message(USER, "Hi"),
        message(ASSISTANT, part(tool_call=content_pb2.ToolCall(id="c1", name="f", arguments_json=""))),
        message(
            TOOL,
            part(tool_result=content_pb2.ToolResult(tool_call_id="c1", content=content, is_error=is_error)),
        ),
        tools=[content_pb2.Tool(name="f")],
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["contents"][1]["parts"][0]["functionCall"] == {"name": "f", "args": {}, "id": "c1"}
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == expected


async def test_function_response_name_is_looked_up_from_the_latest_call(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(
            ASSISTANT, part(tool_call=content_pb2.ToolCall(id="call_0", name="first", arguments_json="{}"))
        ),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="call_0", content="1"))),
        message(
            ASSISTANT, part(tool_call=content_pb2.ToolCall(id="call_0", name="second", arguments_json="{}"))
        ),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="call_0", content="2"))),
        tools=[content_pb2.Tool(name="first"), content_pb2.Tool(name="second")],
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    responses = [c["parts"][0]["functionResponse"] for c in body["contents"][1:] if c["role"] == "user"]
    names = [response["name"] for response in responses]
    assert names == ["first", "second"]


async def test_tool_result_without_a_known_name_is_rejected(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="nope", content="x"))),
    )
    error = await rejected(gemini_provider, gemini_fake, request)
    assert error.field_violations[0].field == "messages[1].parts[0].tool_result.name"


async def test_reasoning_and_signatures_go_back_on_their_parts(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="Thinking...", signature=b"sig-thought")),
            part(reasoning=content_pb2.Reasoning(text="No signature here.")),
            part(reasoning=content_pb2.Reasoning(signature=b"sig-text")),
            "The answer.",
            part(reasoning=content_pb2.Reasoning(signature=b"sig-call")),
            part(tool_call=content_pb2.ToolCall(id="c", name="f", arguments_json="{}")),
            part(reasoning=content_pb2.Reasoning(signature=b"sig-orphan")),
            part(tool_call=content_pb2.ToolCall(id="d", name="f", arguments_json="{}", signature=b"own")),
            part(reasoning=content_pb2.Reasoning()),
            part(reasoning=content_pb2.Reasoning(signature=b"sig-last")),
        ),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="c", content="1"))),
        tools=[content_pb2.Tool(name="f")],
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["contents"][1]["parts"] == [
        {"text": "Thinking...", "thought": True, "thoughtSignature": b64(b"sig-thought")},
        {"text": "No signature here.", "thought": True},
        {"text": "The answer.", "thoughtSignature": b64(b"sig-text")},
        {"functionCall": {"name": "f", "args": {}, "id": "c"}, "thoughtSignature": b64(b"sig-call")},
        {"text": "", "thoughtSignature": b64(b"sig-orphan")},
        {"functionCall": {"name": "f", "args": {}, "id": "d"}, "thoughtSignature": b64(b"own")},
        {"text": "", "thoughtSignature": b64(b"sig-last")},
    ]


async def test_assistant_message_with_only_empty_reasoning_is_omitted(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(ASSISTANT, part(reasoning=content_pb2.Reasoning())),
        message(USER, "Again"),
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert [c["role"] for c in body["contents"]] == ["user", "user"]


async def test_model_generated_image_goes_back_as_inline_data(gemini_provider, gemini_fake):
    request = chat_request(
        message(USER, "Draw a cat"),
        message(ASSISTANT, part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG))),
        message(USER, "Make it blue"),
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"inlineData": {"mimeType": "image/png", "data": b64(PNG)}}],
    }


# ---- tools, tool choice, output format, sampling, reasoning ----------------------------------


async def test_tools_use_parameters_json_schema(gemini_provider, gemini_fake):
    request = chat_request(tools=[weather_tool(), content_pb2.Tool(name="no_args")])
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parametersJsonSchema": WEATHER_SCHEMA,
                },
                {"name": "no_args"},
            ]
        }
    ]
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO), {"mode": "AUTO"}),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE), {"mode": "NONE"}),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED), {"mode": "ANY"}),
        (
            content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="get_weather"),
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
    ids=["auto", "none", "required", "named"],
)
async def test_tool_choice(gemini_provider, gemini_fake, choice, expected):
    request = chat_request(tools=[weather_tool()], tool_choice=choice)
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (content_pb2.ToolChoice.MODE_UNSPECIFIED, "VALIDATED"),
        (content_pb2.ToolChoice.MODE_AUTO, "VALIDATED"),
        (content_pb2.ToolChoice.MODE_REQUIRED, "ANY"),
    ],
)
async def test_strict_tools_select_validated_function_calling(gemini_provider, gemini_fake, mode, expected):
    request = chat_request(tools=[weather_tool(strict=True)], tool_choice=content_pb2.ToolChoice(mode=mode))
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["toolConfig"]["functionCallingConfig"]["mode"] == expected


async def test_parallel_tool_calls_true_is_gemini_default(gemini_provider, gemini_fake):
    body = await sent_body(
        gemini_provider, gemini_fake, chat_request(tools=[weather_tool()], parallel_tool_calls=True)
    )
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_TEXT),
            {"responseMimeType": "text/plain"},
        ),
        (
            content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT),
            {"responseMimeType": "application/json"},
        ),
        (
            content_pb2.ResponseFormat(
                type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
                schema_name="weather",
                json_schema=dict_to_struct(WEATHER_SCHEMA),
                strict=True,
            ),
            {"responseMimeType": "application/json", "responseJsonSchema": WEATHER_SCHEMA},
        ),
    ],
    ids=["text", "json-object", "json-schema"],
)
async def test_response_format(gemini_provider, gemini_fake, fmt, expected):
    body = await sent_body(gemini_provider, gemini_fake, chat_request(response_format=fmt))
    assert body["generationConfig"] == expected


async def test_sampling_options(gemini_provider, gemini_fake):
    request = chat_request(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        max_output_tokens=256,
        stop=["END", "STOP", "x", "y", "z"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="end-user-1",
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 256,
        "stopSequences": ["END", "STOP", "x", "y", "z"],
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
    }
    assert "user" not in body


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (
            chat_pb2.ReasoningOptions(budget_tokens=2048, include=True),
            {"thinkingBudget": 2048, "includeThoughts": True},
        ),
        (chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_MINIMAL), {"thinkingBudget": 512}),
        (chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_LOW), {"thinkingBudget": 1024}),
        (chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_MEDIUM), {"thinkingBudget": 8192}),
        (chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH), {"thinkingBudget": 24576}),
        (
            chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH, budget_tokens=100),
            {"thinkingBudget": 100},
        ),
        (chat_pb2.ReasoningOptions(include=True), {"includeThoughts": True}),
    ],
    ids=["budget+include", "minimal", "low", "medium", "high", "budget-wins", "include-only"],
)
async def test_thinking_config(gemini_provider, gemini_fake, reasoning, expected):
    body = await sent_body(gemini_provider, gemini_fake, chat_request(reasoning=reasoning))
    assert body["generationConfig"] == {"thinkingConfig": expected}


async def test_options_effort_budgets_and_safety_settings(gemini_fake):
    options = {
        "effort_budgets": {"low": 0},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    }
    provider = GeminiProvider("gemini", gemini_settings(gemini_fake.base_url, options=options))
    try:
        request = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_LOW))
        await provider.complete_chat(request, gemini_ctx())
    finally:
        await provider.aclose()
    body = gemini_fake.last.body
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
    assert body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
    ]


async def test_extra_body_is_merged_under_the_adapter_fields(gemini_provider, gemini_fake):
    extra = {
        "generationConfig": {"temperature": 2.0, "candidateCount": 1, "responseModalities": ["TEXT"]},
        "tools": [{"googleSearch": {}}],
        "cachedContent": "cachedContents/abc",
        "contents": [{"role": "user", "parts": [{"text": "ignored"}]}],
    }
    request = chat_request(
        temperature=0.2,
        tools=[weather_tool()],
        provider_options=chat_pb2.ProviderOptions(extra_body=dict_to_struct(extra)),
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "candidateCount": 1,
        "responseModalities": ["TEXT"],
    }
    assert body["tools"][1] == {"googleSearch": {}}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["cachedContent"] == "cachedContents/abc"
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


async def test_gemini_3_thinking_level_through_extra_body(gemini_provider, gemini_fake):
    extra = {"generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}}}
    request = chat_request(
        reasoning=chat_pb2.ReasoningOptions(include=True),
        provider_options=chat_pb2.ProviderOptions(extra_body=dict_to_struct(extra)),
    )
    body = await sent_body(gemini_provider, gemini_fake, request)
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": True}}


# ---- invalid input: INVALID_ARGUMENT before any upstream call ---------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (chat_pb2.CompleteRequest(), "messages"),
        (chat_request(message(SYSTEM, "Only instructions.")), "messages"),
        (chat_request(content_pb2.Message(role=USER)), "messages[0].parts"),
        (chat_request(message(0, "x")), "messages[0].role"),
        (chat_request(message(USER, part())), "messages[0].parts[0]"),
        (
            chat_request(
                message(SYSTEM, part(document=content_pb2.Document(mime_type="application/pdf", data=PDF)))
            ),
            "messages[0].parts[0].document",
        ),
        (
            chat_request(message(USER, part(tool_call=content_pb2.ToolCall(id="c", name="f")))),
            "messages[0].parts[0].tool_call",
        ),
        (
            chat_request(message(USER, part(tool_result=content_pb2.ToolResult(tool_call_id="c")))),
            "messages[0].parts[0].tool_result",
        ),
        (chat_request(message(USER, "Hi"), message(TOOL, "text")), "messages[1].parts[0].text"),
        (
            chat_request(
                message(USER, "Hi"), message(ASSISTANT, part(tool_call=content_pb2.ToolCall(id="c")))
            ),
            "messages[1].parts[0].tool_call.name",
        ),
        (
            chat_request(
                message(USER, "Hi"),
                message(
                    ASSISTANT, part(tool_call=content_pb2.ToolCall(id="c", name="f", arguments_json="[1]"))
                ),
            ),
            "messages[1].parts[0].tool_call.arguments_json",
        ),
        (
            chat_request(
                message(USER, "Hi"),
                message(
                    ASSISTANT, part(tool_call=content_pb2.ToolCall(id="c", name="f", arguments_json="{bad"))
                ),
            ),
            "messages[1].parts[0].tool_call.arguments_json",
        ),
        (
            chat_request(
                message(USER, "Hi"), message(TOOL, part(tool_result=content_pb2.ToolResult(content="x")))
            ),
            "messages[1].parts[0].tool_result.tool_call_id",
        ),
        (
            chat_request(
                message(
                    USER, part(inline_data=content_pb2.InlineData(mime_type="application/zip", data=b"PK"))
                )
            ),
            "messages[0].parts[0].inline_data.mime_type",
        ),
        (
            chat_request(message(USER, part(inline_data=content_pb2.InlineData(mime_type="image/png")))),
            "messages[0].parts[0].inline_data.data",
        ),
        (
            chat_request(message(USER, part(file_uri=content_pb2.FileUri()))),
            "messages[0].parts[0].file_uri.uri",
        ),
        (
            chat_request(message(USER, part(document=content_pb2.Document(data=PDF)))),
            "messages[0].parts[0].document.mime_type",
        ),
        (
            chat_request(
                message(USER, part(document=content_pb2.Document(mime_type="application/msword", data=b"x")))
            ),
            "messages[0].parts[0].document.mime_type",
        ),
        (
            chat_request(message(USER, part(document=content_pb2.Document(mime_type="application/pdf")))),
            "messages[0].parts[0].document",
        ),
        (chat_request(tools=[content_pb2.Tool(name="bad name!")]), "tools[0].name"),
        (chat_request(tools=[content_pb2.Tool(name="f"), content_pb2.Tool(name="f")]), "tools[1].name"),
        (
            chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED)),
            "tool_choice",
        ),
        (
            chat_request(
                tools=[content_pb2.Tool(name="f")],
                tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="g"),
            ),
            "tool_choice.name",
        ),
        (
            chat_request(
                tools=[content_pb2.Tool(name="f")],
                tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED),
            ),
            "tool_choice.name",
        ),
        (chat_request(tools=[content_pb2.Tool(name="f")], parallel_tool_calls=False), "parallel_tool_calls"),
        (chat_request(temperature=2.5), "temperature"),
        (chat_request(temperature=float("nan")), "temperature"),
        (chat_request(top_p=0.0), "top_p"),
        (chat_request(top_k=0), "top_k"),
        (chat_request(max_output_tokens=0), "max_output_tokens"),
        (chat_request(stop=["a", "b", "c", "d", "e", "f"]), "stop"),
        (chat_request(stop=[""]), "stop"),
        (chat_request(seed=2**40), "seed"),
        (chat_request(presence_penalty=2.0), "presence_penalty"),
        (chat_request(frequency_penalty=-2.5), "frequency_penalty"),
        (chat_request(reasoning=chat_pb2.ReasoningOptions(budget_tokens=-1)), "reasoning.budget_tokens"),
        (
            chat_request(
                response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA)
            ),
            "response_format.json_schema",
        ),
    ],
)
async def test_invalid_input_is_rejected_before_any_upstream_call(
    gemini_provider, gemini_fake, request_, field
):
    error = await rejected(gemini_provider, gemini_fake, request_)
    assert [v.field for v in error.field_violations] == [field]
    assert field in error.message


def test_bad_options_fail_at_construction_naming_the_option():
    with pytest.raises(ValueError, match=r"providers\.gem\.options\.safety_settings\.0\.threshold"):
        GeminiProvider(
            "gem",
            gemini_settings(
                "http://127.0.0.1:1/v1beta",
                options={
                    "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "SOMETIMES"}]
                },
            ),
        )
    with pytest.raises(ValueError, match=r"providers\.gem\.options\.typo"):
        GeminiProvider("gem", gemini_settings("http://127.0.0.1:1/v1beta", options={"typo": 1}))
    with pytest.raises(ValueError, match=r"providers\.gem\.options\.models_page_size"):
        GeminiProvider("gem", gemini_settings("http://127.0.0.1:1/v1beta", options={"models_page_size": 0}))


def test_api_key_is_required_for_googles_endpoint():
    with pytest.raises(ValueError, match=r"providers\.gem\.api_key"):
        GeminiProvider("gem", ProviderSettings(kind="gemini"))


def test_openai_only_settings_are_rejected():
    with pytest.raises(ValueError, match=r"providers\.gem\.organization"):
        GeminiProvider("gem", gemini_settings("http://127.0.0.1:1/v1beta", organization="org-x"))
