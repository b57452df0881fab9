"""homa request -> Anthropic Messages body, asserted on what the fake upstream received.

Every request here is also validated against Anthropic's OpenAPI spec by the fake (the
`anthropic_fake` fixture fails the test on any violation).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.anthropic import AnthropicProvider
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import ANTHROPIC_TEST_KEY, FakeAnthropic, anthropic_settings

anthropic_upstream, anthropic_fake, anthropic_provider = (
    fx.anthropic_upstream,
    fx.anthropic_fake,
    fx.anthropic_provider,
)

SYSTEM, DEVELOPER, USER, ASSISTANT, TOOL = (
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_TOOL,
)
MODEL = "claude-sonnet-4-5"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PDF = b"%PDF-1.7 fake pdf bytes"


def part(**kind: Any) -> content_pb2.Part:
    return content_pb2.Part(**kind)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def weather_tool(**fields: Any) -> content_pb2.Tool:
    tool = content_pb2.Tool(name="get_weather", description="Current weather", **fields)
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return tool


async def sent_body(
    provider: AnthropicProvider, fake: FakeAnthropic, request: chat_pb2.CompleteRequest
) -> Any:
    await provider.complete_chat(request, call_ctx(MODEL))
    assert len(fake.requests) == 1
    return fake.last.body


async def rejected(
    provider: AnthropicProvider, fake: FakeAnthropic, request: chat_pb2.CompleteRequest
) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(request, call_ctx(MODEL))
    assert fake.requests == [], "invalid input must not reach the upstream"
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    return caught.value


# ---- basics ------------------------------------------------------------------------------------


async def test_minimal_request(anthropic_provider, anthropic_fake):
    body = await sent_body(anthropic_provider, anthropic_fake, chat_request())
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
    }
    assert anthropic_fake.last.path == "/v1/messages"


async def test_auth_and_version_headers(anthropic_provider, anthropic_fake):
    await anthropic_provider.complete_chat(chat_request(), call_ctx(MODEL))
    headers = anthropic_fake.last.headers
    assert headers["x-api-key"] == ANTHROPIC_TEST_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in headers
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"


async def test_options_version_beta_and_extra_headers(anthropic_fake):
    settings = anthropic_settings(
        anthropic_fake.base_url,
        options={
            "version": "2023-01-01",
            "beta": ["files-api-2025-04-14", "interleaved-thinking-2025-05-14"],
        },
        headers={"X-Team": "search"},
    )
    provider = AnthropicProvider("anthropic", settings)
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    headers = anthropic_fake.last.headers
    assert headers["anthropic-version"] == "2023-01-01"
    assert headers["anthropic-beta"] == "files-api-2025-04-14,interleaved-thinking-2025-05-14"
    assert headers["x-team"] == "search"


async def test_prompt_cache_option(anthropic_fake):
    settings = anthropic_settings(anthropic_fake.base_url, options={"prompt_cache": "1h"})
    provider = AnthropicProvider("anthropic", settings)
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert anthropic_fake.last.body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


async def test_thinking_accepts_its_allowed_sampling(anthropic_provider, anthropic_fake):
    request = chat_request(
        reasoning=chat_pb2.ReasoningOptions(budget_tokens=1024),
        temperature=1.0,
        top_p=0.95,
        tools=[weather_tool()],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO),
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert (body["temperature"], body["top_p"], body["tool_choice"]) == (1.0, 0.95, {"type": "auto"})


async def test_default_max_tokens_option(anthropic_fake):
    settings = anthropic_settings(anthropic_fake.base_url, options={"default_max_tokens": 1000})
    provider = AnthropicProvider("anthropic", settings)
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
        await provider.complete_chat(chat_request(max_output_tokens=50), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert [r.body["max_tokens"] for r in anthropic_fake.requests] == [1000, 50]


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"default_max_tokens": 0}, "providers.claude.options.default_max_tokens"),
        ({"beta": ["a,b"]}, "providers.claude.options.beta"),
        ({"versoin": "x"}, "providers.claude.options.versoin"),
        ({"version": ""}, "providers.claude.options.version"),
        ({"prompt_cache": "forever"}, "providers.claude.options.prompt_cache"),
    ],
)
def test_bad_options_are_rejected_at_construction(options, path):
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        AnthropicProvider("claude", anthropic_settings("http://127.0.0.1:9", options=options))


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"api_key": None}, "providers.claude.api_key"),
        ({"organization": "org-1"}, "providers.claude.organization"),
    ],
)
def test_bad_settings_are_rejected_at_construction(overrides, path):
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        AnthropicProvider("claude", anthropic_settings("http://127.0.0.1:9", **overrides))


# ---- messages ------------------------------------------------------------------------------


async def test_system_and_developer_become_top_level_system(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(USER, "Hi", name="alice"),
        message(ASSISTANT, "Hello!"),
        message(DEVELOPER, "Answer in English."),
        message(USER, "Weather?"),
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in English."},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
    ]


async def test_consecutive_same_role_turns_are_merged(anthropic_provider, anthropic_fake):
    request = chat_request(message(USER, "One."), message(USER, "Two.", ""), message(ASSISTANT, "Ok"))
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Ok"}]},
    ]


async def test_images_inline_and_by_url(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(
            USER,
            "Look:",
            part(
                inline_data=content_pb2.InlineData(
                    mime_type="image/png", data=PNG, detail=content_pb2.IMAGE_DETAIL_HIGH
                )
            ),
            part(inline_data=content_pb2.InlineData(mime_type="image/jpg", data=PNG)),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/cat.webp", mime_type="image/webp")),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/dog")),
        )
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(PNG)}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/dog"}},
    ]


async def test_documents_pdf_text_and_url(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(
            USER,
            part(document=content_pb2.Document(mime_type="application/pdf", data=PDF, title="Report")),
            part(document=content_pb2.Document(mime_type="application/pdf", uri="https://example.com/a.pdf")),
            part(document=content_pb2.Document(mime_type="text/markdown", data=b"# Notes")),
            part(inline_data=content_pb2.InlineData(mime_type="application/pdf", data=PDF)),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/b.pdf?x=1")),
            "Summarise.",
        )
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
            "title": "Report",
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "# Notes"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf?x=1"}},
        {"type": "text", "text": "Summarise."},
    ]


async def test_document_citations_option(anthropic_fake):
    provider = AnthropicProvider(
        "anthropic", anthropic_settings(anthropic_fake.base_url, options={"document_citations": True})
    )
    doc = part(document=content_pb2.Document(mime_type="text/plain", data=b"The sky is blue.", title="Facts"))
    try:
        await provider.complete_chat(chat_request(message(USER, doc, "Colour?")), call_ctx(MODEL))
    finally:
        await provider.aclose()
    block = anthropic_fake.last.body["messages"][0]["content"][0]
    assert block["citations"] == {"enabled": True}
    assert block["title"] == "Facts"


async def test_tool_round_trip_messages(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(
            ASSISTANT,
            "Checking.",
            part(
                tool_call=content_pb2.ToolCall(
                    id="toolu_1", name="get_weather", arguments_json='{"city": "Paris"}'
                )
            ),
            part(tool_call=content_pb2.ToolCall(id="toolu_2", name="get_weather", arguments_json="")),
        ),
        message(
            TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="toolu_1", content='{"temp": 21}'))
        ),
        message(
            TOOL,
            part(
                tool_result=content_pb2.ToolResult(
                    tool_call_id="toolu_2", content="city missing", is_error=True
                )
            ),
        ),
        message(USER, "And tomorrow?"),
        tools=[weather_tool()],
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
        ],
    }
    # Consecutive tool results (and the following text) are ONE user message, results first.
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp": 21}'},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "city missing", "is_error": True},
            {"type": "text", "text": "And tomorrow?"},
        ],
    }
    assert len(body["messages"]) == 3


async def test_reasoning_signatures_round_trip(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(USER, "Think."),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="Let me think.", signature=b"EqQBCkYIBxgCKkB/sig==")),
            part(reasoning=content_pb2.Reasoning(redacted=True, signature=b"EmwKAhgBEgy3redacted")),
            part(reasoning=content_pb2.Reasoning(text="from another vendor")),  # unsigned: dropped
            part(tool_call=content_pb2.ToolCall(id="toolu_1", name="get_weather", arguments_json="{}")),
        ),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="toolu_1", content="sunny"))),
        tools=[weather_tool()],
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCkYIBxgCKkB/sig=="},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3redacted"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    ]


async def test_assistant_turn_with_only_unsigned_reasoning_is_omitted(anthropic_provider, anthropic_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(ASSISTANT, part(reasoning=content_pb2.Reasoning(text="hmm"))),
        message(USER, "Again"),
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}]}
    ]


# ---- tools, tool choice, structured output, reasoning --------------------------------------


async def test_tools_and_strict(anthropic_provider, anthropic_fake):
    bare = content_pb2.Tool(name="now")
    untyped = content_pb2.Tool(name="search")
    untyped.parameters.update({"properties": {"q": {"type": "string"}}})
    request = chat_request(tools=[weather_tool(strict=True), bare, untyped])
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "strict": True,
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "search", "input_schema": {"properties": {"q": {"type": "string"}}, "type": "object"}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO), None, {"type": "auto"}),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE), None, {"type": "none"}),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED), None, {"type": "any"}),
        (
            content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="get_weather"),
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
            False,
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE), False, {"type": "none"}),
        (None, True, None),
    ],
    ids=[
        "auto",
        "none",
        "required",
        "named",
        "no-parallel",
        "required-no-parallel",
        "none-no-parallel",
        "parallel",
    ],
)
async def test_tool_choice(anthropic_provider, anthropic_fake, choice, parallel, expected):
    request = chat_request(tools=[weather_tool()])
    if choice is not None:
        request.tool_choice.CopyFrom(choice)
    if parallel is not None:
        request.parallel_tool_calls = parallel
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body.get("tool_choice") == expected


async def test_tool_choice_without_tools_is_not_sent(anthropic_provider, anthropic_fake):
    request = chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_AUTO))
    request.parallel_tool_calls = False
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert "tool_choice" not in body


async def test_json_schema_uses_native_output_format(anthropic_provider, anthropic_fake):
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    request = chat_request(
        response_format=content_pb2.ResponseFormat(
            type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
            schema_name="count",
            json_schema=dict_to_struct(schema),
        )
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_text_response_format_sends_nothing(anthropic_provider, anthropic_fake):
    request = chat_request(
        response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_TEXT)
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert "output_config" not in body


async def test_thinking_budget(anthropic_provider, anthropic_fake):
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(budget_tokens=2048))
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 4096 + 2048  # thinking counts inside max_tokens


async def test_thinking_budget_with_explicit_max_tokens(anthropic_provider, anthropic_fake):
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(budget_tokens=1024), max_output_tokens=3000)
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["max_tokens"] == 3000


async def test_adaptive_thinking_and_effort(anthropic_provider, anthropic_fake):
    request = chat_request(
        reasoning=chat_pb2.ReasoningOptions(include=True, effort=chat_pb2.REASONING_EFFORT_HIGH)
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "high"}


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        (chat_pb2.REASONING_EFFORT_MINIMAL, "low"),
        (chat_pb2.REASONING_EFFORT_LOW, "low"),
        (chat_pb2.REASONING_EFFORT_MEDIUM, "medium"),
    ],
)
async def test_effort_levels(anthropic_provider, anthropic_fake, effort, expected):
    body = await sent_body(
        anthropic_provider, anthropic_fake, chat_request(reasoning=chat_pb2.ReasoningOptions(effort=effort))
    )
    assert body["output_config"] == {"effort": expected}
    assert "thinking" not in body


async def test_sampling_stop_and_user(anthropic_provider, anthropic_fake):
    request = chat_request(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_output_tokens=256,
        stop=["END", "\n\nHuman:"],
        user="user-42",
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert {
        k: body[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "stop_sequences", "metadata")
    } == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 256,
        "stop_sequences": ["END", "\n\nHuman:"],
        "metadata": {"user_id": "user-42"},
    }


async def test_extra_body_is_merged_and_adapter_fields_win(anthropic_provider, anthropic_fake):
    request = chat_request()
    request.provider_options.extra_body.update(
        {"service_tier": "standard_only", "model": "other", "stream": True}
    )
    body = await sent_body(anthropic_provider, anthropic_fake, request)
    assert body["service_tier"] == "standard_only"
    assert body["model"] == MODEL
    assert "stream" not in body


async def test_stream_flag(anthropic_provider, anthropic_fake):
    await collect(anthropic_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert anthropic_fake.last.body["stream"] is True


# ---- invalid input: INVALID_ARGUMENT before any upstream call ------------------------------


def _with(**fields: Any) -> chat_pb2.CompleteRequest:
    return chat_request(**fields)


THINKING = chat_pb2.ReasoningOptions(budget_tokens=1024)

INVALID = [
    ("seed", _with(seed=1)),
    ("presence_penalty", _with(presence_penalty=0.5)),
    ("frequency_penalty", _with(frequency_penalty=0.5)),
    ("temperature", _with(temperature=1.5)),
    ("top_k", _with(top_k=-1)),
    ("max_output_tokens", _with(max_output_tokens=0)),
    ("stop[1]", _with(stop=["ok", "  "])),
    ("user", _with(user="u" * 513)),
    ("reasoning.budget_tokens", _with(reasoning=chat_pb2.ReasoningOptions(budget_tokens=500))),
    ("temperature", _with(reasoning=THINKING, temperature=0.5)),
    ("top_k", _with(reasoning=THINKING, top_k=5)),
    ("top_p", _with(reasoning=chat_pb2.ReasoningOptions(include=True), top_p=0.5)),
    (
        "tool_choice",
        _with(
            reasoning=THINKING,
            tools=[content_pb2.Tool(name="a")],
            tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
        ),
    ),
    (
        "max_output_tokens",
        _with(reasoning=chat_pb2.ReasoningOptions(budget_tokens=2000), max_output_tokens=2000),
    ),
    (
        "response_format.type",
        _with(response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT)),
    ),
    (
        "response_format.json_schema",
        _with(response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA)),
    ),
    ("messages", chat_pb2.CompleteRequest()),
    ("messages", chat_request(message(SYSTEM, "Only a system prompt."))),
    ("messages[0].parts", chat_request(content_pb2.Message(role=USER))),
    ("messages[0].role", chat_request(content_pb2.Message(parts=[part(text="x")]))),
    ("messages[0].parts", chat_request(message(USER, ""))),
    (
        "messages[0].parts[0].tool_result",
        chat_request(message(USER, part(tool_result=content_pb2.ToolResult(tool_call_id="a")))),
    ),
    (
        "messages[0].parts[0].inline_data",
        chat_request(
            message(SYSTEM, part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG)))
        ),
    ),
    (
        "messages[0].parts[0].document",
        chat_request(
            message(ASSISTANT, part(document=content_pb2.Document(mime_type="text/plain", data=b"x")))
        ),
    ),
    ("messages[0].parts[0].text", chat_request(message(TOOL, "x"))),
    (
        "messages[1].parts[0].tool_call.arguments_json",
        chat_request(
            message(USER, "x"),
            message(ASSISTANT, part(tool_call=content_pb2.ToolCall(id="t1", name="f", arguments_json="[1]"))),
        ),
    ),
    (
        "messages[1].parts[0].tool_call.arguments_json",
        chat_request(
            message(USER, "x"),
            message(
                ASSISTANT, part(tool_call=content_pb2.ToolCall(id="t1", name="f", arguments_json="{nope"))
            ),
        ),
    ),
    (
        "messages[1].parts[0].tool_call.id",
        chat_request(
            message(USER, "x"),
            message(ASSISTANT, part(tool_call=content_pb2.ToolCall(id="call:1", name="f"))),
        ),
    ),
    (
        "messages[1].parts[0].reasoning.signature",
        chat_request(
            message(USER, "x"),
            message(ASSISTANT, part(reasoning=content_pb2.Reasoning(text="t", signature=b"\xff\x00"))),
        ),
    ),
    (
        "messages[0].parts[0].inline_data.mime_type",
        chat_request(
            message(USER, part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF")))
        ),
    ),
    (
        "messages[0].parts[0].inline_data.data",
        chat_request(message(USER, part(inline_data=content_pb2.InlineData(mime_type="image/png")))),
    ),
    (
        "messages[0].parts[0].file_uri.uri",
        chat_request(message(USER, part(file_uri=content_pb2.FileUri(uri="gs://bucket/cat.png")))),
    ),
    (
        "messages[0].parts[0].file_uri.mime_type",
        chat_request(
            message(USER, part(file_uri=content_pb2.FileUri(uri="https://x/a.mp3", mime_type="audio/mpeg")))
        ),
    ),
    (
        "messages[0].parts[0].document.uri",
        chat_request(
            message(USER, part(document=content_pb2.Document(mime_type="text/plain", uri="https://x/a.txt")))
        ),
    ),
    (
        "messages[0].parts[0].document.mime_type",
        chat_request(
            message(USER, part(document=content_pb2.Document(mime_type="application/msword", data=b"x")))
        ),
    ),
    (
        "messages[0].parts[0].document.mime_type",
        chat_request(message(USER, part(document=content_pb2.Document(data=b"x")))),
    ),
    (
        "messages[0].parts[0].document.data",
        chat_request(
            message(USER, part(document=content_pb2.Document(mime_type="text/plain", data=b"\xff")))
        ),
    ),
    (
        "messages[0].parts[0].document.title",
        chat_request(
            message(
                USER, part(document=content_pb2.Document(mime_type="text/plain", data=b"x", title="t" * 501))
            )
        ),
    ),
    ("tools[0].name", _with(tools=[content_pb2.Tool(name="bad name!")])),
    ("tools[1].name", _with(tools=[content_pb2.Tool(name="a"), content_pb2.Tool(name="a")])),
    ("tool_choice", _with(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED))),
    (
        "tool_choice.name",
        _with(
            tools=[content_pb2.Tool(name="a")],
            tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="b"),
        ),
    ),
]


@pytest.mark.parametrize(("field", "request_"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_invalid_input_is_rejected_before_any_call(anthropic_provider, anthropic_fake, field, request_):
    error = await rejected(anthropic_provider, anthropic_fake, request_)
    assert [v.field for v in error.field_violations] == [field]
    assert error.message.startswith(field)


async def test_non_object_tool_schema_is_rejected(anthropic_provider, anthropic_fake):
    tool = content_pb2.Tool(name="f")
    tool.parameters.update({"type": "array"})
    error = await rejected(anthropic_provider, anthropic_fake, chat_request(tools=[tool]))
    assert error.field_violations[0].field == "tools[0].parameters"


async def test_invalid_stream_request_sends_nothing(anthropic_provider, anthropic_fake):
    with pytest.raises(GatewayError) as caught:
        await collect(anthropic_provider.stream_chat(chat_request(seed=3), call_ctx(MODEL)))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert anthropic_fake.requests == []
