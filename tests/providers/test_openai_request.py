"""homa request -> OpenAI Chat Completions body, asserted on what the fake upstream received.

Every request here is also validated against OpenAI's OpenAPI spec by the fake (the `openai_fake`
fixture fails the test on any violation).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.openai import OpenAIProvider
from tests.providers.conftest import OPENAI_TEST_KEY, call_ctx, chat_request, collect, message
from tests.providers.fakes.openai_upstream import FakeOpenAI

SYSTEM, DEVELOPER, USER, ASSISTANT, TOOL = (
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_TOOL,
)
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PDF = b"%PDF-1.7 fake pdf bytes"


def part(**kind: Any) -> content_pb2.Part:
    return content_pb2.Part(**kind)


async def sent_body(provider: OpenAIProvider, fake: FakeOpenAI, request: chat_pb2.CompleteRequest) -> Any:
    await provider.complete_chat(request, call_ctx())
    assert len(fake.requests) == 1
    return fake.last.body


async def test_roles_and_plain_text_become_string_content(openai_provider, openai_fake):
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(DEVELOPER, "Answer in English."),
        message(USER, "Hi", name="alice"),
        message(ASSISTANT, "Hello!"),
        message(USER, "Weather?"),
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi", "name": "alice"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"},
        ],
    }


async def test_headers_carry_auth_org_project_and_request_id(openai_provider, openai_fake):
    await openai_provider.complete_chat(chat_request(), call_ctx(request_id="req-123"))
    headers = openai_fake.last.headers
    assert headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    assert headers["openai-organization"] == "org-fx"
    assert headers["openai-project"] == "proj_fx"
    assert headers["content-type"] == "application/json"
    assert headers["x-client-request-id"] == "req-123"
    assert openai_fake.last.path == "/v1/chat/completions"


async def test_several_parts_become_typed_content_array(openai_provider, openai_fake):
    request = chat_request(
        message(SYSTEM, "One.", "Two."),
        message(
            USER,
            "Look:",
            part(
                inline_data=content_pb2.InlineData(
                    mime_type="image/png", data=PNG, detail=content_pb2.IMAGE_DETAIL_HIGH
                )
            ),
            part(
                file_uri=content_pb2.FileUri(
                    uri="https://example.com/cat.jpg", detail=content_pb2.IMAGE_DETAIL_LOW
                )
            ),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/dog.webp", mime_type="image/webp")),
        ),
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "One."},
        {"type": "text", "text": "Two."},
    ]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Look:"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "high"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.webp"}},
    ]


async def test_audio_documents_and_file_ids(openai_provider, openai_fake):
    request = chat_request(
        message(
            SYSTEM,
            part(document=content_pb2.Document(mime_type="text/markdown", data=b"# Rules", title="rules.md")),
        ),
        message(
            USER,
            part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF....WAVE")),
            part(document=content_pb2.Document(mime_type="application/pdf", data=PDF, title="report.pdf")),
            part(inline_data=content_pb2.InlineData(mime_type="application/pdf", data=PDF)),
            part(document=content_pb2.Document(mime_type="application/pdf", uri="file-abc123")),
            part(file_uri=content_pb2.FileUri(uri="file-img456")),
            part(document=content_pb2.Document(mime_type="text/plain", data="naïve".encode())),
        ),
    )
    body = await sent_body(openai_provider, openai_fake, request)
    pdf_url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    assert body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "rules.md\n\n# Rules"}],
    }
    assert body["messages"][1]["content"] == [
        {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"},
        },
        {"type": "file", "file": {"filename": "report.pdf", "file_data": pdf_url}},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": pdf_url}},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"file_id": "file-img456"}},
        {"type": "text", "text": "naïve"},
    ]


async def test_tool_round_trip_messages(openai_provider, openai_fake):
    request = chat_request(
        message(USER, "Weather in Paris and time in Rome?"),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="I should call both tools.", signature=b"sig")),
            part(
                tool_call=content_pb2.ToolCall(
                    id="call_a", name="get_weather", arguments_json='{"city":"Paris"}'
                )
            ),
            part(
                tool_call=content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"city":"Rome"}')
            ),
        ),
        message(
            TOOL,
            part(
                tool_result=content_pb2.ToolResult(
                    tool_call_id="call_a", name="get_weather", content='{"c":21}'
                )
            ),
            part(tool_result=content_pb2.ToolResult(tool_call_id="call_b", content="boom", is_error=True)),
        ),
        message(ASSISTANT, part(reasoning=content_pb2.Reasoning(text="only thoughts"))),
        message(ASSISTANT, "Partly ", "sunny."),
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"c":21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "boom"},
        # the reasoning-only assistant message is omitted entirely
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Partly "}, {"type": "text", "text": "sunny."}],
        },
    ]


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 14}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_tools_keep_integers_and_strict(openai_provider, openai_fake):
    request = chat_request(
        tools=[
            content_pb2.Tool(
                name="get_weather",
                description="Forecast",
                parameters=dict_to_struct(WEATHER_SCHEMA),
                strict=True,
            ),
            content_pb2.Tool(name="now"),
        ],
        parallel_tool_calls=False,
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Forecast",
                "parameters": WEATHER_SCHEMA,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    maximum = body["tools"][0]["function"]["parameters"]["properties"]["days"]["maximum"]
    assert isinstance(maximum, int)
    assert body["parallel_tool_calls"] is False
    assert openai_fake.last.raw.count(b'"maximum":14') == 1  # not 14.0 on the wire


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO), "auto"),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE), "none"),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED), "required"),
        (
            content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="now"),
            {"type": "function", "function": {"name": "now"}},
        ),
        (content_pb2.ToolChoice(), None),
    ],
)
async def test_tool_choice(openai_provider, openai_fake, choice, expected):
    request = chat_request(tools=[content_pb2.Tool(name="now")], tool_choice=choice)
    body = await sent_body(openai_provider, openai_fake, request)
    assert body.get("tool_choice") == expected


async def test_tool_choice_and_parallel_calls_are_omitted_without_tools(openai_provider, openai_fake):
    request = chat_request(
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO), parallel_tool_calls=True
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert "tool_choice" not in body
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_TEXT), {"type": "text"}),
        (
            content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT),
            {"type": "json_object"},
        ),
        (
            content_pb2.ResponseFormat(
                type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
                schema_name="weather",
                json_schema=dict_to_struct(WEATHER_SCHEMA),
                strict=True,
            ),
            {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
            },
        ),
        (
            content_pb2.ResponseFormat(
                type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
                json_schema=dict_to_struct({"type": "object"}),
            ),
            {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
        ),
        (content_pb2.ResponseFormat(), None),
    ],
)
async def test_response_format(openai_provider, openai_fake, response_format, expected):
    body = await sent_body(openai_provider, openai_fake, chat_request(response_format=response_format))
    assert body.get("response_format") == expected


async def test_sampling_parameters(openai_provider, openai_fake):
    request = chat_request(
        temperature=0.0,
        top_p=0.5,
        max_output_tokens=256,
        stop=["END", "STOP"],
        seed=7,
        presence_penalty=0.25,
        frequency_penalty=-0.5,
        reasoning=chat_pb2.ReasoningOptions(
            effort=chat_pb2.REASONING_EFFORT_HIGH, budget_tokens=999, include=True
        ),
        user="user-42",
        metadata={"team": "search"},
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.0,
        "top_p": 0.5,
        "max_completion_tokens": 256,
        "stop": ["END", "STOP"],
        "seed": 7,
        "presence_penalty": 0.25,
        "frequency_penalty": -0.5,
        "reasoning_effort": "high",
        "user": "user-42",
    }  # metadata, budget_tokens and include are never sent


async def test_unset_optional_scalars_are_not_sent(openai_provider, openai_fake):
    body = await sent_body(openai_provider, openai_fake, chat_request())
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


async def test_extra_body_is_merged_and_adapter_fields_win(openai_provider, openai_fake):
    extra = {
        "model": "gpt-evil",
        "service_tier": "flex",
        "store": False,
        "stream": True,
        "n": 3,
        "max_completion_tokens": 1,
    }
    request = chat_request(
        max_output_tokens=50, provider_options=chat_pb2.ProviderOptions(extra_body=dict_to_struct(extra))
    )
    body = await sent_body(openai_provider, openai_fake, request)
    assert body["model"] == "gpt-4o-mini"
    assert body["max_completion_tokens"] == 50
    assert body["service_tier"] == "flex"
    assert body["store"] is False
    assert "stream" not in body
    assert "n" not in body


async def test_stream_body_asks_for_usage_and_keeps_extra_stream_options(openai_provider, openai_fake):
    extra = {"stream_options": {"include_obfuscation": False, "include_usage": False}}
    request = chat_request(provider_options=chat_pb2.ProviderOptions(extra_body=dict_to_struct(extra)))
    await collect(openai_provider.stream_chat(request, call_ctx()))
    body = openai_fake.last.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


# ---- invalid homa input: INVALID_ARGUMENT with a precise field, nothing sent upstream ----------

TOOLS = [content_pb2.Tool(name="now")]
INVALID = [
    ("no messages", chat_pb2.CompleteRequest(model="m"), "messages"),
    ("unspecified role", chat_request(message(content_pb2.ROLE_UNSPECIFIED, "x")), "messages[0].role"),
    ("no parts", chat_request(message(USER)), "messages[0].parts"),
    ("empty part", chat_request(message(USER, content_pb2.Part())), "messages[0].parts[0]"),
    (
        "tool result outside a tool message",
        chat_request(message(USER, part(tool_result=content_pb2.ToolResult(tool_call_id="c", content="1")))),
        "messages[0].parts[0].tool_result",
    ),
    (
        "text in a tool message",
        chat_request(message(USER, "x"), message(TOOL, "hi")),
        "messages[1].parts[0].text",
    ),
    (
        "tool call from the user",
        chat_request(message(USER, part(tool_call=content_pb2.ToolCall(id="c", name="now")))),
        "messages[0].parts[0].tool_call",
    ),
    (
        "tool call without id",
        chat_request(
            message(USER, "x"), message(ASSISTANT, part(tool_call=content_pb2.ToolCall(name="now")))
        ),
        "messages[1].parts[0].tool_call.id",
    ),
    (
        "tool call without name",
        chat_request(message(USER, "x"), message(ASSISTANT, part(tool_call=content_pb2.ToolCall(id="c")))),
        "messages[1].parts[0].tool_call.name",
    ),
    (
        "tool result without call id",
        chat_request(
            message(USER, "x"), message(TOOL, part(tool_result=content_pb2.ToolResult(content="1")))
        ),
        "messages[1].parts[0].tool_result.tool_call_id",
    ),
    (
        "image in a system message",
        chat_request(
            message(SYSTEM, part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG)))
        ),
        "messages[0].parts[0].inline_data",
    ),
    (
        "pdf in a system message",
        chat_request(
            message(SYSTEM, part(document=content_pb2.Document(mime_type="application/pdf", data=PDF)))
        ),
        "messages[0].parts[0].document",
    ),
    (
        "unsupported inline type",
        chat_request(
            message(USER, part(inline_data=content_pb2.InlineData(mime_type="video/mp4", data=b"x")))
        ),
        "messages[0].parts[0].inline_data.mime_type",
    ),
    (
        "empty inline data",
        chat_request(message(USER, part(inline_data=content_pb2.InlineData(mime_type="image/png")))),
        "messages[0].parts[0].inline_data.data",
    ),
    (
        "document by URL",
        chat_request(
            message(
                USER, part(document=content_pb2.Document(mime_type="application/pdf", uri="https://x/a.pdf"))
            )
        ),
        "messages[0].parts[0].document.uri",
    ),
    (
        "non-image URL",
        chat_request(
            message(
                USER, part(file_uri=content_pb2.FileUri(uri="https://x/a.pdf", mime_type="application/pdf"))
            )
        ),
        "messages[0].parts[0].file_uri.mime_type",
    ),
    (
        "gs:// URL",
        chat_request(message(USER, part(file_uri=content_pb2.FileUri(uri="gs://bucket/cat.png")))),
        "messages[0].parts[0].file_uri.uri",
    ),
    (
        "document without type",
        chat_request(message(USER, part(document=content_pb2.Document(data=b"x")))),
        "messages[0].parts[0].document.mime_type",
    ),
    (
        "text document that is not UTF-8",
        chat_request(
            message(USER, part(document=content_pb2.Document(mime_type="text/plain", data=b"\xff\xfe")))
        ),
        "messages[0].parts[0].document.data",
    ),
    ("top_k", chat_request(top_k=40), "top_k"),
    ("bad tool name", chat_request(tools=[content_pb2.Tool(name="get weather")]), "tools[0].name"),
    ("duplicate tool", chat_request(tools=[*TOOLS, content_pb2.Tool(name="now")]), "tools[1].name"),
    (
        "required without tools",
        chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED)),
        "tool_choice",
    ),
    (
        "named tool without name",
        chat_request(tools=TOOLS, tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED)),
        "tool_choice.name",
    ),
    (
        "named tool unknown",
        chat_request(
            tools=TOOLS, tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="x")
        ),
        "tool_choice.name",
    ),
    (
        "json schema without schema",
        chat_request(
            response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA)
        ),
        "response_format.json_schema",
    ),
    (
        "bad schema name",
        chat_request(
            response_format=content_pb2.ResponseFormat(
                type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
                schema_name="a b",
                json_schema=dict_to_struct({}),
            )
        ),
        "response_format.schema_name",
    ),
    ("zero max tokens", chat_request(max_output_tokens=0), "max_output_tokens"),
    ("five stop sequences", chat_request(stop=["a", "b", "c", "d", "e"]), "stop"),
]


@pytest.mark.parametrize(
    ("request_", "field"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
async def test_invalid_input_is_rejected_before_any_upstream_call(
    openai_provider, openai_fake, request_, field, streamed
):
    with pytest.raises(GatewayError) as caught:
        if streamed:
            await collect(openai_provider.stream_chat(request_, call_ctx()))
        else:
            await openai_provider.complete_chat(request_, call_ctx())
    error = caught.value
    assert error.code == Code.INVALID_ARGUMENT
    assert error.reason == Reason.INVALID_REQUEST
    assert [v.field for v in error.field_violations] == [field]
    assert error.message.startswith(f"{field}: ")
    assert openai_fake.requests == []
