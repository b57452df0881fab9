"""Request translation: homa CompleteRequest -> Azure chat completions body, URL and headers.

Every body built here is also run through the spec validator of its api-version (including the
check for undeclared fields), so "translated" always means "translated into what the spec allows".
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.azure_openai.api_versions import surface_for
from homa_server.providers.azure_openai.chat_request import AzureChatBuilder
from tests.providers.azure_spec import validate_azure_request
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import AZURE_KEY, azure_settings
from tests.strategies import PNG_1X1

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake
azure_provider = fake.azure_provider

GA = "2024-10-21"
PREVIEW = "2025-04-01-preview"
USER, ASSISTANT, SYSTEM, DEVELOPER, TOOL = (
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_TOOL,
)


def build(
    request: chat_pb2.CompleteRequest,
    api_version: str = GA,
    *,
    stream: bool = False,
    max_tokens_field: str = "max_completion_tokens",
) -> dict[str, Any]:
    """Build the body and assert that the spec of `api_version` accepts it."""
    body = AzureChatBuilder(surface_for(api_version), api_version, max_tokens_field).build(
        request, stream=stream
    )
    problems = validate_azure_request(
        "POST",
        "/openai/deployments/gpt-4o/chat/completions",
        {"api-version": api_version},
        orjson.dumps(body),
        {"api-key": "k", "content-type": "application/json"},
    )
    assert problems == [], problems
    return body


def rejected(request: chat_pb2.CompleteRequest, api_version: str = GA) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        AzureChatBuilder(surface_for(api_version), api_version, "max_completion_tokens").build(
            request, stream=False
        )
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    return caught.value


def field_of(error: GatewayError) -> str:
    assert len(error.field_violations) == 1
    return error.field_violations[0].field


def tool(name: str = "get_weather") -> content_pb2.Tool:
    result = content_pb2.Tool(name=name, description="Current weather")
    result.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return result


# ---- the basics ------------------------------------------------------------------------------


def test_minimal_body_has_no_model_field():
    assert build(chat_request()) == {"messages": [{"role": "user", "content": "Hi"}]}


def test_system_prompt_and_multi_turn():
    body = build(
        chat_request(
            message(SYSTEM, "Be brief."),
            message(USER, "Hi", name="ann"),
            message(ASSISTANT, "Hello!"),
            message(USER, "How are you?"),
        )
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]


def test_developer_role_becomes_system_on_ga_and_stays_on_preview():
    request = chat_request(message(DEVELOPER, "Answer in French."), message(USER, "Hi"))
    assert build(request, GA)["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert build(request, PREVIEW)["messages"][0] == {"role": "developer", "content": "Answer in French."}


def test_streaming_asks_for_usage_only_where_the_spec_has_stream_options():
    assert build(chat_request(), GA, stream=True) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }
    assert build(chat_request(), PREVIEW, stream=True)["stream_options"] == {"include_usage": True}


def test_sampling_options():
    request = chat_request(
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=256,
        stop=["END", "STOP"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="user-42",
    )
    body = build(request)
    assert {k: v for k, v in body.items() if k != "messages"} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_completion_tokens": 256,
        "stop": ["END", "STOP"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "user": "user-42",
    }


def test_max_tokens_field_option_for_older_deployments():
    body = build(chat_request(max_output_tokens=100), max_tokens_field="max_tokens")
    assert body["max_tokens"] == 100
    assert "max_completion_tokens" not in body


# ---- tools --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "name", "expected"),
    [
        (content_pb2.ToolChoice.MODE_AUTO, "", "auto"),
        (content_pb2.ToolChoice.MODE_NONE, "", "none"),
        (content_pb2.ToolChoice.MODE_REQUIRED, "", "required"),
        (
            content_pb2.ToolChoice.MODE_NAMED,
            "get_weather",
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tools_and_tool_choice(mode, name, expected):
    strict = content_pb2.Tool(name="lookup", strict=True)
    strict.parameters.update({"type": "object", "properties": {}, "additionalProperties": False})
    request = chat_request(
        tools=[tool(), strict],
        tool_choice=content_pb2.ToolChoice(mode=mode, name=name),
        parallel_tool_calls=False,
    )
    body = build(request)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
                "strict": True,
            },
        },
    ]
    assert body["tool_choice"] == expected
    assert body["parallel_tool_calls"] is False


def test_named_tool_choice_must_name_a_tool():
    request = chat_request(
        tools=[tool()],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="nope"),
    )
    assert field_of(rejected(request)) == "tool_choice.name"


def test_parallel_tool_calls_and_results_round_trip():
    calls = message(
        ASSISTANT,
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}')
        ),
        content_pb2.Part(
            tool_call=content_pb2.ToolCall(
                id="call_b", name="get_weather", arguments_json='{"city":"Oslo"}', signature=b"opaque"
            )
        ),
    )
    results = message(
        TOOL,
        content_pb2.Part(tool_result=content_pb2.ToolResult(tool_call_id="call_a", content='{"temp_c":21}')),
        content_pb2.Part(tool_result=content_pb2.ToolResult(tool_call_id="call_b", content='{"temp_c":4}')),
    )
    body = build(chat_request(message(USER, "Weather?"), calls, results, tools=[tool()]))
    assert body["messages"][1] == {
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
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            },
        ],
    }
    assert body["messages"][2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c":21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"temp_c":4}'},
    ]


def test_reasoning_parts_are_not_sent_back():
    # Azure chat completions has no input field for reasoning (and never returns any).
    history = message(
        ASSISTANT,
        content_pb2.Part(reasoning=content_pb2.Reasoning(text="thinking", signature=b"sig")),
        "Answer",
    )
    body = build(chat_request(message(USER, "Q"), history, message(USER, "More")))
    assert body["messages"][1] == {"role": "assistant", "content": "Answer"}


def test_too_many_tools():
    request = chat_request(tools=[tool(f"t{i}") for i in range(129)])
    assert field_of(rejected(request)) == "tools"


# ---- structured output ------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", [GA, PREVIEW])
def test_json_schema_response_format(api_version):
    fmt = content_pb2.ResponseFormat(
        type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="answer", strict=True
    )
    fmt.json_schema.update({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    body = build(chat_request(response_format=fmt), api_version)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "strict": True,
        },
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (content_pb2.ResponseFormat.TYPE_JSON_OBJECT, "json_object"),
        (content_pb2.ResponseFormat.TYPE_TEXT, "text"),
    ],
)
def test_json_object_and_text_formats(kind, expected):
    body = build(chat_request(response_format=content_pb2.ResponseFormat(type=kind)))
    assert body["response_format"] == {"type": expected}


# ---- media ----------------------------------------------------------------------------------------


def test_images_inline_and_by_url():
    request = chat_request(
        message(
            USER,
            "What is this?",
            content_pb2.Part(
                inline_data=content_pb2.InlineData(
                    mime_type="image/png", data=PNG_1X1, detail=content_pb2.IMAGE_DETAIL_LOW
                )
            ),
            content_pb2.Part(
                file_uri=content_pb2.FileUri(uri="https://example.com/cat.jpg", mime_type="image/jpeg")
            ),
        )
    )
    content = build(request)["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert content[1]["image_url"]["detail"] == "low"
    assert content[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}


def test_text_documents_are_inlined():
    doc = content_pb2.Document(mime_type="text/markdown", data=b"# Notes\nAll good.", title="notes.md")
    content = build(chat_request(message(USER, "Summarise", content_pb2.Part(document=doc))))["messages"][0][
        "content"
    ]
    assert content[1] == {"type": "text", "text": "notes.md\n\n# Notes\nAll good."}


@pytest.mark.parametrize(
    ("part", "path"),
    [
        (
            content_pb2.Part(
                inline_data=content_pb2.InlineData(mime_type="application/pdf", data=b"%PDF-1.7")
            ),
            "messages[0].parts[1].inline_data.mime_type",
        ),
        (
            content_pb2.Part(document=content_pb2.Document(mime_type="application/pdf", data=b"%PDF-1.7")),
            "messages[0].parts[1].document.mime_type",
        ),
        (
            content_pb2.Part(document=content_pb2.Document(mime_type="application/msword", data=b"doc")),
            "messages[0].parts[1].document.mime_type",
        ),
        (
            content_pb2.Part(file_uri=content_pb2.FileUri(uri="file-abc123", mime_type="application/pdf")),
            "messages[0].parts[1].file_uri.uri",
        ),
        (
            content_pb2.Part(file_uri=content_pb2.FileUri(uri="gs://bucket/cat.png")),
            "messages[0].parts[1].file_uri.uri",
        ),
        (
            content_pb2.Part(
                file_uri=content_pb2.FileUri(uri="https://x/a.pdf", mime_type="application/pdf")
            ),
            "messages[0].parts[1].file_uri.mime_type",
        ),
        (
            content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="video/mp4", data=b"\x00")),
            "messages[0].parts[1].inline_data.mime_type",
        ),
    ],
    ids=["inline-pdf", "pdf-document", "word-document", "file-id", "gs-url", "pdf-url", "video"],
)
def test_unsupported_media_is_rejected_naming_the_part(part, path):
    error = rejected(chat_request(message(USER, "Read this", part)))
    assert field_of(error) == path


def test_pdf_rejection_says_what_to_do():
    part = content_pb2.Part(document=content_pb2.Document(mime_type="application/pdf", data=b"%PDF"))
    assert "extract the text" in rejected(chat_request(message(USER, "x", part))).message


def test_audio_input_needs_a_preview_version():
    audio = content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF0000WAVE"))
    request = chat_request(message(USER, "Transcribe", audio))
    assert "preview" in rejected(request, GA).message
    content = build(request, PREVIEW)["messages"][0]["content"]
    assert content[1] == {"type": "input_audio", "input_audio": {"data": "UklGRjAwMDBXQVZF", "format": "wav"}}


# ---- what Azure cannot express ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"top_k": 40}, "top_k"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3.0}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_unsupported_sampling_is_rejected(fields, path):
    assert field_of(rejected(chat_request(**fields))) == path


def test_reasoning_effort_needs_a_preview_version():
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH))
    error = rejected(request, GA)
    assert field_of(error) == "reasoning.effort"
    assert "preview" in error.message
    assert build(request, PREVIEW)["reasoning_effort"] == "high"


def test_minimal_effort_does_not_exist_on_azure():
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_MINIMAL))
    error = rejected(request, PREVIEW)
    assert field_of(error) == "reasoning.effort"
    assert "high, low, medium" in error.message


def test_budget_and_include_are_other_vendors_controls_and_ignored():
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(budget_tokens=2048, include=True))
    assert build(request) == {"messages": [{"role": "user", "content": "Hi"}]}


# ---- provider_options.extra_body --------------------------------------------------------------


def test_extra_body_passes_declared_azure_fields():
    request = chat_request()
    request.provider_options.extra_body.update(
        {
            "data_sources": [
                {
                    "type": "azure_search",
                    "parameters": {
                        "endpoint": "https://search.example.net",
                        "index_name": "docs",
                        "authentication": {"type": "system_assigned_managed_identity"},
                    },
                }
            ],
            "logprobs": True,
        }
    )
    body = build(request)
    assert body["data_sources"][0]["parameters"]["index_name"] == "docs"
    assert body["logprobs"] is True


@pytest.mark.parametrize(
    ("key", "api_version"),
    [("model", PREVIEW), ("stream", GA), ("n", GA), ("messages", GA), ("banana", PREVIEW), ("store", GA)],
)
def test_extra_body_rejects_undeclared_and_adapter_owned_fields(key, api_version):
    request = chat_request()
    request.provider_options.extra_body.update({key: 1})
    assert field_of(rejected(request, api_version)) == f"provider_options.extra_body.{key}"


# ---- URL, headers, auth (through the fake) -----------------------------------------------------


async def test_deployment_path_and_api_version_query(azure_fake):
    provider = AzureOpenAIProvider(
        "azure", azure_settings(azure_fake.base_url, deployments={"gpt-4o": "prod-gpt4o"})
    )
    try:
        await provider.complete_chat(chat_request(), call_ctx("gpt-4o"))
        assert azure_fake.last.path == "/openai/deployments/prod-gpt4o/chat/completions"
        assert azure_fake.last.query == {"api-version": "2024-10-21"}
        await provider.complete_chat(chat_request(), call_ctx("gpt-4o-mini"))  # not mapped: used as is
        assert azure_fake.last.deployment == "gpt-4o-mini"
    finally:
        await provider.aclose()


async def test_api_key_header_and_nothing_else(azure_provider, azure_fake):
    await azure_provider.complete_chat(chat_request(), call_ctx("gpt-4o"))
    headers = azure_fake.last.headers
    assert headers["api-key"] == AZURE_KEY
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"


async def test_entra_token_as_bearer(azure_fake):
    azure_fake.auth = "entra"
    azure_fake.key = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJjb2duaXRpdmUifQ.c2ln"
    settings = azure_settings(azure_fake.base_url, auth="entra").model_copy(
        update={"api_key": SecretStr(azure_fake.key)}
    )
    provider = AzureOpenAIProvider("azure", settings)
    try:
        await provider.complete_chat(chat_request(), call_ctx("gpt-4o"))
    finally:
        await provider.aclose()
    assert azure_fake.last.headers["authorization"] == f"Bearer {azure_fake.key}"
    assert "api-key" not in azure_fake.last.headers


async def test_preview_version_on_the_wire(azure_fake):
    provider = AzureOpenAIProvider("azure", azure_settings(azure_fake.base_url, api_version=PREVIEW))
    try:
        request = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_LOW))
        await collect(provider.stream_chat(request, call_ctx("o3-mini")))
    finally:
        await provider.aclose()
    assert azure_fake.last.query == {"api-version": PREVIEW}
    assert azure_fake.last.body == {
        "messages": [{"role": "user", "content": "Hi"}],
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_invalid_input_sends_nothing(azure_provider, azure_fake):
    bad = chat_request(top_k=5)
    with pytest.raises(GatewayError) as unary:
        await azure_provider.complete_chat(bad, call_ctx("gpt-4o"))
    with pytest.raises(GatewayError) as streamed:
        await collect(azure_provider.stream_chat(bad, call_ctx("gpt-4o")))
    with pytest.raises(GatewayError) as empty:
        await azure_provider.complete_chat(chat_pb2.CompleteRequest(model="azure/gpt-4o"), call_ctx("gpt-4o"))
    assert {unary.value.code, streamed.value.code, empty.value.code} == {Code.INVALID_ARGUMENT}
    assert azure_fake.requests == []
