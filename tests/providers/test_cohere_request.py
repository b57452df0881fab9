"""homa request -> Cohere v2 chat body, asserted on what the fake upstream received.

Every request here is also validated against Cohere's OpenAPI spec by the fake (the `cohere_fake`
fixture fails the test on any violation), so each expected body is also a spec-valid body.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.cohere.result_mapping import TOOL_PLAN_SIGNATURE
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes.cohere_upstream import (
    COHERE_TEST_KEY,
    FakeCohere,
    cohere_settings,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

SYSTEM, DEVELOPER, USER, ASSISTANT, TOOL = (
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_TOOL,
)
MODEL = "command-a-03-2025"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def part(**kind: Any) -> content_pb2.Part:
    return content_pb2.Part(**kind)


def weather_tool(**fields: Any) -> content_pb2.Tool:
    return content_pb2.Tool(
        name="get_weather", description="Current weather", parameters=dict_to_struct(WEATHER_SCHEMA), **fields
    )


async def sent_body(provider: CohereProvider, fake: FakeCohere, request: chat_pb2.CompleteRequest) -> Any:
    await provider.complete_chat(request, call_ctx(MODEL))
    assert len(fake.requests) == 1
    return fake.last.body


# ---- messages --------------------------------------------------------------------------------


async def test_roles_and_plain_text_become_string_content(cohere_provider, cohere_fake):
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(DEVELOPER, "Answer in English."),
        message(USER, "Hi", name="alice"),
        message(ASSISTANT, "Hello!"),
        message(USER, "Weather?"),
    )
    assert await sent_body(cohere_provider, cohere_fake, request) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},  # Cohere has no participant names
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"},
        ],
    }


async def test_headers_carry_bearer_auth_and_json(cohere_provider, cohere_fake):
    await cohere_provider.complete_chat(chat_request(), call_ctx(MODEL))
    request = cohere_fake.last
    assert request.path == "/v2/chat"
    assert request.headers["authorization"] == f"Bearer {COHERE_TEST_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert "x-client-name" not in request.headers
    assert "stream" not in request.body


async def test_client_name_option_and_custom_headers(cohere_fake):
    settings = cohere_settings(
        cohere_fake.base_url, options={"client_name": "homa-tests"}, headers={"X-Extra": "1"}
    )
    provider = CohereProvider("cohere", settings)
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert cohere_fake.last.headers["x-client-name"] == "homa-tests"
    assert cohere_fake.last.headers["x-extra"] == "1"


async def test_several_parts_become_typed_items_with_images(cohere_provider, cohere_fake):
    request = chat_request(
        message(SYSTEM, "One.", "Two."),
        message(
            USER,
            "Look:",
            part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG)),
            part(
                file_uri=content_pb2.FileUri(
                    uri="https://example.com/cat.jpg",
                    mime_type="image/jpeg",
                    detail=content_pb2.IMAGE_DETAIL_LOW,
                )
            ),
            part(inline_data=content_pb2.InlineData(mime_type="text/csv", data=b"a,b\n1,2")),
        ),
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    encoded = base64.b64encode(PNG).decode()
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                {"type": "text", "text": "a,b\n1,2"},
            ],
        },
    ]


async def test_text_documents_become_top_level_rag_documents(cohere_provider, cohere_fake):
    request = chat_request(
        message(SYSTEM, part(document=content_pb2.Document(mime_type="text/plain", data=b"Policy text"))),
        message(
            USER,
            part(document=content_pb2.Document(mime_type="text/markdown", data=b"# Notes", title="notes.md")),
            "Summarise the documents.",
        ),
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body["documents"] == [
        {"id": "doc_0", "data": {"text": "Policy text"}},
        {"id": "doc_1", "data": {"title": "notes.md", "text": "# Notes"}},
    ]
    # The system message held only a document: its content now lives in `documents`.
    assert body["messages"] == [{"role": "user", "content": "Summarise the documents."}]


async def test_tool_round_trip_messages(cohere_provider, cohere_fake):
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="I will look both up.", signature=TOOL_PLAN_SIGNATURE)),
            part(
                tool_call=content_pb2.ToolCall(id="c1", name="get_weather", arguments_json='{"city":"Paris"}')
            ),
            part(tool_call=content_pb2.ToolCall(id="c2", name="get_weather", arguments_json="")),
        ),
        message(
            TOOL,
            part(
                tool_result=content_pb2.ToolResult(tool_call_id="c1", name="get_weather", content='{"t":21}')
            ),
            part(tool_result=content_pb2.ToolResult(tool_call_id="c2", content="failed", is_error=True)),
        ),
        tools=[weather_tool()],
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "tool_plan": "I will look both up.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"t":21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "failed"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]


async def test_thinking_round_trips_as_thinking_content(cohere_provider, cohere_fake):
    request = chat_request(
        message(USER, "2+2?"),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="Add them.")),
            part(reasoning=content_pb2.Reasoning(signature=b"opaque", redacted=True)),  # nothing readable
            "4",
        ),
        message(USER, "And 3+3?"),
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "Add them."}, {"type": "text", "text": "4"}],
    }


async def test_assistant_message_with_only_redacted_reasoning_is_omitted(cohere_provider, cohere_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(ASSISTANT, part(reasoning=content_pb2.Reasoning(signature=b"x", redacted=True))),
        message(USER, "Hello?"),
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert [m["role"] for m in body["messages"]] == ["user", "user"]


# ---- tools, format, sampling, reasoning ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (content_pb2.ToolChoice.MODE_UNSPECIFIED, None),
        (content_pb2.ToolChoice.MODE_AUTO, None),
        (content_pb2.ToolChoice.MODE_REQUIRED, "REQUIRED"),
        (content_pb2.ToolChoice.MODE_NONE, "NONE"),
    ],
)
async def test_tool_choice(cohere_provider, cohere_fake, mode, expected):
    request = chat_request(tools=[weather_tool()], tool_choice=content_pb2.ToolChoice(mode=mode))
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body.get("tool_choice") == expected


async def test_tool_choice_none_without_tools_is_not_sent(cohere_provider, cohere_fake):
    request = chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE))
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert "tool_choice" not in body
    assert "tools" not in body


async def test_tool_without_schema_and_strict_tools(cohere_provider, cohere_fake):
    request = chat_request(tools=[content_pb2.Tool(name="now"), weather_tool(strict=True)])
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
    }
    assert body["strict_tools"] is True


@pytest.mark.parametrize(
    ("fmt", "expected"),
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
            {"type": "json_object", "json_schema": WEATHER_SCHEMA},
        ),
    ],
    ids=["text", "json-object", "json-schema"],
)
async def test_response_format(cohere_provider, cohere_fake, fmt, expected):
    body = await sent_body(cohere_provider, cohere_fake, chat_request(response_format=fmt))
    assert body["response_format"] == expected


async def test_sampling_options_use_cohere_names(cohere_provider, cohere_fake):
    request = chat_request(
        temperature=0.4,
        top_p=0.9,
        top_k=40,
        max_output_tokens=256,
        stop=["END", "STOP"],
        seed=7,
        frequency_penalty=0.2,
        presence_penalty=0.1,
        user="end-user-1",
        parallel_tool_calls=True,
    )
    body = await sent_body(cohere_provider, cohere_fake, request)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.4,
        "p": 0.9,
        "k": 40,
        "max_tokens": 256,
        "stop_sequences": ["END", "STOP"],
        "seed": 7,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
    }


async def test_top_p_of_one_is_sent_as_cohere_maximum(cohere_provider, cohere_fake):
    body = await sent_body(cohere_provider, cohere_fake, chat_request(top_p=1.0))
    assert body["p"] == 0.99


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (chat_pb2.ReasoningOptions(budget_tokens=2048), {"type": "enabled", "token_budget": 2048}),
        (chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH), {"type": "enabled"}),
        (chat_pb2.ReasoningOptions(include=True), None),
    ],
    ids=["budget", "effort", "include-only"],
)
async def test_reasoning_options_become_thinking(cohere_provider, cohere_fake, reasoning, expected):
    body = await sent_body(cohere_provider, cohere_fake, chat_request(reasoning=reasoning))
    assert body.get("thinking") == expected


async def test_option_defaults_and_extra_body_precedence(cohere_fake):
    options = {"safety_mode": "OFF", "citation_mode": "FAST", "priority": 5}
    provider = CohereProvider("cohere", cohere_settings(cohere_fake.base_url, options=options))
    request = chat_request(temperature=0.5)
    request.provider_options.extra_body.update(
        {"safety_mode": "STRICT", "thinking": {"type": "disabled"}, "stream": True, "temperature": 0.9}
    )
    try:
        await provider.complete_chat(request, call_ctx(MODEL))
    finally:
        await provider.aclose()
    body = cohere_fake.last.body
    assert body["safety_mode"] == "STRICT"  # the request overrides the provider default
    assert body["citation_options"] == {"mode": "FAST"}
    assert body["priority"] == 5
    assert body["thinking"] == {"type": "disabled"}
    assert body["temperature"] == 0.5  # fields the adapter sets win over extra_body
    assert "stream" not in body  # extra_body cannot switch the protocol


async def test_stream_request_sets_stream(cohere_provider, cohere_fake):
    await collect(cohere_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert cohere_fake.last.body["stream"] is True
    assert cohere_fake.last.headers["accept"] == "text/event-stream"


# ---- invalid input: INVALID_ARGUMENT, nothing sent -------------------------------------------


def _named_choice() -> chat_pb2.CompleteRequest:
    return chat_request(
        tools=[weather_tool()],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="get_weather"),
    )


INVALID = {
    "named-tool-choice": (_named_choice, "tool_choice.mode"),
    "required-without-tools": (
        lambda: chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED)),
        "tool_choice",
    ),
    "parallel-off": (lambda: chat_request(parallel_tool_calls=False), "parallel_tool_calls"),
    "temperature": (lambda: chat_request(temperature=1.5), "temperature"),
    "top-p-too-small": (lambda: chat_request(top_p=0.001), "top_p"),
    "top-k": (lambda: chat_request(top_k=501), "top_k"),
    "six-stops": (lambda: chat_request(stop=["a", "b", "c", "d", "e", "f"]), "stop"),
    "empty-stop": (lambda: chat_request(stop=["a", ""]), "stop[1]"),
    "negative-seed": (lambda: chat_request(seed=-1), "seed"),
    "negative-penalty": (lambda: chat_request(frequency_penalty=-0.5), "frequency_penalty"),
    "large-penalty": (lambda: chat_request(presence_penalty=1.5), "presence_penalty"),
    "no-messages": (lambda: chat_pb2.CompleteRequest(model="m"), "messages"),
    "no-role": (lambda: chat_request(content_pb2.Message(parts=[part(text="x")])), "messages[0].role"),
    "empty-message": (lambda: chat_request(message(USER)), "messages[0].parts"),
    "bad-tool-name": (lambda: chat_request(tools=[content_pb2.Tool(name="bad name")]), "tools[0].name"),
    "duplicate-tool": (lambda: chat_request(tools=[weather_tool(), weather_tool()]), "tools[1].name"),
    "tool-result-in-user": (
        lambda: chat_request(message(USER, part(tool_result=content_pb2.ToolResult(tool_call_id="x")))),
        "messages[0].parts[0].tool_result",
    ),
    "tool-call-without-id": (
        lambda: chat_request(message(ASSISTANT, part(tool_call=content_pb2.ToolCall(name="f")))),
        "messages[0].parts[0].tool_call.id",
    ),
    "pdf-document": (
        lambda: chat_request(
            message(
                USER, "Read", part(document=content_pb2.Document(mime_type="application/pdf", data=b"%PDF"))
            )
        ),
        "messages[0].parts[1].document.mime_type",
    ),
    "document-by-uri": (
        lambda: chat_request(
            message(
                USER, "Read", part(document=content_pb2.Document(mime_type="text/plain", uri="https://x/y"))
            )
        ),
        "messages[0].parts[1].document.data",
    ),
    "document-only-user-message": (
        lambda: chat_request(
            message(USER, part(document=content_pb2.Document(mime_type="text/plain", data=b"x")))
        ),
        "messages[0].parts",
    ),
    "inline-pdf": (
        lambda: chat_request(
            message(USER, part(inline_data=content_pb2.InlineData(mime_type="application/pdf", data=b"%PDF")))
        ),
        "messages[0].parts[0].inline_data.mime_type",
    ),
    "inline-audio": (
        lambda: chat_request(
            message(USER, part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF")))
        ),
        "messages[0].parts[0].inline_data.mime_type",
    ),
    "non-utf8-text": (
        lambda: chat_request(
            message(USER, part(inline_data=content_pb2.InlineData(mime_type="text/plain", data=b"\xff")))
        ),
        "messages[0].parts[0].inline_data.data",
    ),
    "ftp-uri": (
        lambda: chat_request(message(USER, part(file_uri=content_pb2.FileUri(uri="ftp://x/y.png")))),
        "messages[0].parts[0].file_uri.uri",
    ),
    "video-uri": (
        lambda: chat_request(
            message(USER, part(file_uri=content_pb2.FileUri(uri="https://x/y", mime_type="video/mp4")))
        ),
        "messages[0].parts[0].file_uri.mime_type",
    ),
    "image-in-assistant": (
        lambda: chat_request(
            message(ASSISTANT, part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG)))
        ),
        "messages[0].parts[0].inline_data",
    ),
    "schema-missing": (
        lambda: chat_request(
            response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA)
        ),
        "response_format.json_schema",
    ),
}


@pytest.mark.parametrize(("build", "field"), list(INVALID.values()), ids=list(INVALID))
@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
async def test_invalid_input_is_rejected_before_any_request(
    cohere_provider, cohere_fake, build, field, streamed
):
    request = build()
    with pytest.raises(GatewayError) as caught:
        if streamed:
            await collect(cohere_provider.stream_chat(request, call_ctx(MODEL)))
        else:
            await cohere_provider.complete_chat(request, call_ctx(MODEL))
    error = caught.value
    assert error.code == Code.INVALID_ARGUMENT
    assert error.reason == Reason.INVALID_REQUEST
    assert [v.field for v in error.field_violations] == [field]
    assert cohere_fake.requests == []
