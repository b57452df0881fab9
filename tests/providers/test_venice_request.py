"""homa request -> Venice chat body, asserted on what the fake upstream received.

Every request here is also validated against Venice's OpenAPI spec by the fake (the `venice_fake`
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
from homa_server.providers.venice import VeniceProvider
from homa_server.providers.venice.reasoning import encode_signature
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes.venice_upstream import (
    VENICE_TEST_KEY,
    FakeVenice,
    venice_settings,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_provider_fixture as _venice_provider  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401

SYSTEM, DEVELOPER, USER, ASSISTANT, TOOL = (
    content_pb2.ROLE_SYSTEM,
    content_pb2.ROLE_DEVELOPER,
    content_pb2.ROLE_USER,
    content_pb2.ROLE_ASSISTANT,
    content_pb2.ROLE_TOOL,
)
MODEL = "zai-org-glm-5-1"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PDF = b"%PDF-1.7 fake pdf bytes"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def part(**kind: Any) -> content_pb2.Part:
    return content_pb2.Part(**kind)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sent_body(provider: VeniceProvider, fake: FakeVenice, request: chat_pb2.CompleteRequest) -> Any:
    await provider.complete_chat(request, call_ctx(MODEL))
    assert len(fake.requests) == 1
    return fake.last.body


async def test_roles_and_plain_text_become_string_content(venice_provider, venice_fake):
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(DEVELOPER, "Answer in English."),
        message(USER, "Hi", name="alice"),
        message(ASSISTANT, "Hello!"),
        message(USER, "Weather?"),
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi", "name": "alice"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"},
        ],
    }


async def test_headers_carry_bearer_auth_and_json(venice_provider, venice_fake):
    await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    headers = venice_fake.last.headers
    assert headers["authorization"] == f"Bearer {VENICE_TEST_KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert venice_fake.last.path == "/api/v1/chat/completions"


async def test_settings_headers_override_defaults(venice_fake):
    provider = VeniceProvider(
        "venice", venice_settings(venice_fake.base_url, headers={"User-Agent": "acme/1.0"})
    )
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert venice_fake.last.headers["user-agent"] == "acme/1.0"


async def test_images_audio_video_and_documents(venice_provider, venice_fake):
    request = chat_request(
        message(
            USER,
            "Look:",
            part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG, detail=3)),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/cat.jpg", mime_type="image/jpeg")),
            part(file_uri=content_pb2.FileUri(uri="https://example.com/dog.webp")),
            part(inline_data=content_pb2.InlineData(mime_type="audio/flac", data=b"fLaC....")),
            part(inline_data=content_pb2.InlineData(mime_type="video/mp4", data=b"....ftypmp42")),
            part(file_uri=content_pb2.FileUri(uri="https://youtu.be/dQw4w9WgXcQ")),
            part(document=content_pb2.Document(mime_type="application/pdf", data=PDF, title="report.pdf")),
            part(inline_data=content_pb2.InlineData(mime_type=DOCX, data=b"PK docx")),
            part(document=content_pb2.Document(mime_type="application/pdf", uri="https://example.com/a.pdf")),
            part(document=content_pb2.Document(mime_type="text/plain", data="naïve".encode(), title="n.txt")),
            "",  # empty text parts are left out (Venice requires non-empty text)
        )
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(PNG)}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.webp"}},
        {"type": "input_audio", "input_audio": {"data": b64(b"fLaC...."), "format": "flac"}},
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(b"....ftypmp42")}},
        {"type": "video_url", "video_url": {"url": "https://youtu.be/dQw4w9WgXcQ"}},
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64," + b64(PDF)},
        },
        {
            "type": "file",
            "file": {"filename": "document.docx", "file_data": f"data:{DOCX};base64," + b64(b"PK docx")},
        },
        {"type": "file", "file": {"file_data": "https://example.com/a.pdf"}},
        {"type": "text", "text": "n.txt\n\nnaïve"},
    ]


async def test_text_documents_in_system_messages_are_inlined(venice_provider, venice_fake):
    rules = part(document=content_pb2.Document(mime_type="text/markdown", data=b"# Rules", title="rules.md"))
    body = await sent_body(
        venice_provider, venice_fake, chat_request(message(SYSTEM, "Follow:", rules), message(USER, "Hi"))
    )
    assert body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Follow:"}, {"type": "text", "text": "rules.md\n\n# Rules"}],
    }


async def test_tool_round_trip_messages(venice_provider, venice_fake):
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(
            ASSISTANT,
            part(
                tool_call=content_pb2.ToolCall(
                    id="call_1", name="get_weather", arguments_json='{"city":"Paris"}'
                )
            ),
            part(
                tool_call=content_pb2.ToolCall(
                    id="call_2", name="get_weather", arguments_json='{"city":"Rome"}'
                )
            ),
        ),
        message(
            TOOL,
            part(
                tool_result=content_pb2.ToolResult(tool_call_id="call_1", name="get_weather", content="21C")
            ),
            part(tool_result=content_pb2.ToolResult(tool_call_id="call_2", content="failed", is_error=True)),
        ),
    )
    tool = request.tools.add(name="get_weather", description="Current weather", strict=True)
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21C", "name": "get_weather"},
        {"role": "tool", "tool_call_id": "call_2", "content": "failed"},
    ]
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
                "strict": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("mode", "name", "expected"),
    [
        (content_pb2.ToolChoice.MODE_AUTO, "", "auto"),
        (content_pb2.ToolChoice.MODE_NONE, "", "none"),
        (content_pb2.ToolChoice.MODE_REQUIRED, "", "required"),
        (content_pb2.ToolChoice.MODE_NAMED, "lookup", {"type": "function", "function": {"name": "lookup"}}),
    ],
)
async def test_tool_choice(venice_provider, venice_fake, mode, name, expected):
    request = chat_request(
        tool_choice=content_pb2.ToolChoice(mode=mode, name=name), parallel_tool_calls=False
    )
    request.tools.add(name="lookup")
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["tool_choice"] == expected
    assert body["parallel_tool_calls"] is False


async def test_required_tool_choice_without_tools_is_rejected(venice_provider, venice_fake):
    request = chat_request(tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(request, call_ctx(MODEL))
    assert caught.value.field_violations[0].field == "tool_choice"
    assert venice_fake.requests == []


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
                schema_name="person",
                strict=True,
                json_schema=dict_to_struct(
                    {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
                ),
            ),
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "person",
                    "schema": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}},
                    "strict": True,
                },
            },
        ),
    ],
    ids=["text", "json-object", "json-schema"],
)
async def test_response_format(venice_provider, venice_fake, response_format, expected):
    body = await sent_body(venice_provider, venice_fake, chat_request(response_format=response_format))
    assert body["response_format"] == expected


async def test_sampling_parameters_and_top_k(venice_provider, venice_fake):
    request = chat_request(
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        max_output_tokens=256,
        stop=["END", "STOP"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="user-123",
        reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH, budget_tokens=1000),
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "max_completion_tokens": 256,
        "stop": ["END", "STOP"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "user": "user-123",
        "reasoning_effort": "high",
    }


async def test_venice_parameters_and_extra_sampling(venice_provider, venice_fake):
    venice = chat_pb2.VeniceParameters(
        enable_web_search="auto",
        include_venice_system_prompt=False,
        strip_thinking_response=True,
        disable_thinking=False,
        character_slug="alan-watts",
        enable_web_citations=True,
        include_search_results_in_stream=True,
        enable_web_scraping=False,
        min_p=0.05,
        repetition_penalty=1.1,
        min_temp=0.2,
        max_temp=1.5,
    )
    request = chat_request(provider_options=chat_pb2.ProviderOptions(venice=venice))
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["venice_parameters"] == {
        "enable_web_search": "auto",
        "include_venice_system_prompt": False,
        "strip_thinking_response": True,
        "disable_thinking": False,
        "character_slug": "alan-watts",
        "enable_web_citations": True,
        "include_search_results_in_stream": True,
        "enable_web_scraping": False,
    }
    assert (body["min_p"], body["repetition_penalty"], body["min_temp"], body["max_temp"]) == (
        0.05,
        1.1,
        0.2,
        1.5,
    )


async def test_unset_options_are_not_sent(venice_provider, venice_fake):
    body = await sent_body(
        venice_provider, venice_fake, chat_request(provider_options=chat_pb2.ProviderOptions())
    )
    assert set(body) == {"model", "messages"}


async def test_option_defaults_are_merged_under_request_values(venice_fake):
    options = {"venice_parameters": {"include_venice_system_prompt": False, "enable_web_search": "on"}}
    provider = VeniceProvider("venice", venice_settings(venice_fake.base_url, options=options))
    venice = chat_pb2.VeniceParameters(enable_web_search="off")
    try:
        await provider.complete_chat(
            chat_request(provider_options=chat_pb2.ProviderOptions(venice=venice)), call_ctx(MODEL)
        )
    finally:
        await provider.aclose()
    assert venice_fake.last.body["venice_parameters"] == {
        "include_venice_system_prompt": False,
        "enable_web_search": "off",
    }


async def test_extra_body_is_merged_and_adapter_fields_win(venice_provider, venice_fake):
    extra = dict_to_struct(
        {
            "prompt_cache_key": "conv-1",
            "logprobs": True,
            "temperature": 1.9,
            "stream": True,
            "n": 3,
            "venice_parameters": {"enable_web_search": "on", "enable_web_scraping": True},
        }
    )
    venice = chat_pb2.VeniceParameters(enable_web_search="off")
    request = chat_request(
        temperature=0.1, provider_options=chat_pb2.ProviderOptions(extra_body=extra, venice=venice)
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["prompt_cache_key"] == "conv-1"
    assert body["logprobs"] is True
    assert body["temperature"] == 0.1
    assert "stream" not in body
    assert "n" not in body
    assert body["venice_parameters"] == {"enable_web_search": "off", "enable_web_scraping": True}


async def test_stream_body_asks_for_usage_and_event_stream(venice_provider, venice_fake):
    await collect(venice_provider.stream_chat(chat_request(), call_ctx(MODEL)))
    assert venice_fake.last.body["stream"] is True
    assert venice_fake.last.body["stream_options"] == {"include_usage": True}
    assert venice_fake.last.headers["accept"] == "text/event-stream"


async def test_reasoning_round_trips_with_its_signature(venice_provider, venice_fake):
    details = [
        {
            "type": "reasoning.encrypted",
            "data": "gAAAA-opaque",
            "id": "rs_1",
            "format": "google-gemini-v1",
            "index": 0,
        }
    ]
    signature = encode_signature(details, "CiQB-thought")
    request = chat_request(
        message(USER, "What is 6*7?"),
        message(
            ASSISTANT,
            part(reasoning=content_pb2.Reasoning(text="Multiply.", signature=signature)),
            part(tool_call=content_pb2.ToolCall(id="call_1", name="calc", arguments_json='{"x":"6*7"}')),
        ),
        message(TOOL, part(tool_result=content_pb2.ToolResult(tool_call_id="call_1", content="42"))),
    )
    request.tools.add(name="calc")
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x":"6*7"}'}}
        ],
        "reasoning_content": "Multiply.",
        "reasoning_details": details,
        "thought_signature": "CiQB-thought",
    }


async def test_foreign_signatures_and_reasoning_only_messages_are_not_sent(venice_provider, venice_fake):
    request = chat_request(
        message(USER, "Hi"),
        message(ASSISTANT, part(reasoning=content_pb2.Reasoning(text="only thoughts"))),
        message(
            ASSISTANT, part(reasoning=content_pb2.Reasoning(signature=b"EqQBCkYIBxgCKkD-anthropic")), "Hello"
        ),
        message(USER, "And?"),
    )
    body = await sent_body(venice_provider, venice_fake, request)
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "And?"},
    ]


def venice(**fields: Any) -> dict[str, Any]:
    return {"provider_options": chat_pb2.ProviderOptions(venice=chat_pb2.VeniceParameters(**fields))}


def extra(body: dict[str, Any]) -> dict[str, Any]:
    return {"provider_options": chat_pb2.ProviderOptions(extra_body=dict_to_struct(body))}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3.0}, "presence_penalty"),
        ({"frequency_penalty": float("nan")}, "frequency_penalty"),
        ({"seed": 0}, "seed"),
        ({"top_k": -1}, "top_k"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        (venice(enable_web_search="yes"), "provider_options.venice.enable_web_search"),
        (venice(character_slug=" x "), "provider_options.venice.character_slug"),
        (venice(min_p=1.5), "provider_options.venice.min_p"),
        (venice(repetition_penalty=-1), "provider_options.venice.repetition_penalty"),
        (venice(min_temp=1.5, max_temp=0.5), "provider_options.venice.min_temp"),
        (venice(max_temp=2.5), "provider_options.venice.max_temp"),
        (extra({"web_search": True}), "provider_options.extra_body.web_search"),
        (extra({"venice_parameters": "on"}), "provider_options.extra_body.venice_parameters"),
    ],
)
async def test_out_of_range_values_are_rejected_before_any_upstream_call(
    venice_provider, venice_fake, request_fields, field
):
    request = chat_request(**request_fields)
    for call in (
        lambda: venice_provider.complete_chat(request, call_ctx(MODEL)),
        lambda: collect(venice_provider.stream_chat(request, call_ctx(MODEL))),
    ):
        with pytest.raises(GatewayError) as caught:
            await call()
        assert caught.value.code == Code.INVALID_ARGUMENT
        assert caught.value.reason == Reason.INVALID_REQUEST
        assert caught.value.field_violations[0].field == field
    assert venice_fake.requests == []


def inline(mime_type: str, data: bytes = b"") -> content_pb2.Part:
    return part(inline_data=content_pb2.InlineData(mime_type=mime_type, data=data))


def document(**fields: Any) -> content_pb2.Part:
    return part(document=content_pb2.Document(**fields))


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ((inline("image/gif", b"GIF89a"),), "inline_data.mime_type"),
        ((inline("image/png"),), "inline_data.data"),
        ((inline("application/zip", b"PK"),), "inline_data.mime_type"),
        ((part(file_uri=content_pb2.FileUri(uri="gs://bucket/cat.png")),), "file_uri.uri"),
        (
            (part(file_uri=content_pb2.FileUri(uri="https://x.test/a.mp3", mime_type="audio/mpeg")),),
            "file_uri.uri",
        ),
        ((document(mime_type="application/pdf"),), "document"),
        ((document(data=PDF),), "document.mime_type"),
        ((document(mime_type="application/pdf", uri="s3://b/k.pdf"),), "document.uri"),
        ((document(mime_type="application/x-tar", data=b"..."),), "document.mime_type"),
        ((document(mime_type="text/plain", data=b"\xff\xfe"),), "document.data"),
    ],
)
async def test_media_venice_cannot_take_is_rejected(venice_provider, venice_fake, parts, field):
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(message(USER, "x", *parts)), call_ctx(MODEL))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.field_violations[0].field == f"messages[0].parts[1].{field}"
    assert venice_fake.requests == []


async def test_files_outside_user_messages_are_rejected(venice_provider, venice_fake):
    pdf = part(document=content_pb2.Document(mime_type="application/pdf", data=PDF))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(
            chat_request(message(SYSTEM, pdf), message(USER, "Hi")), call_ctx(MODEL)
        )
    assert caught.value.field_violations[0].field == "messages[0].parts[0].document"
    assert "ROLE_USER" in caught.value.message
    assert venice_fake.requests == []


@pytest.mark.parametrize(
    "request_messages",
    [
        (),
        (content_pb2.Message(role=USER),),
        (message(0, "no role"),),
        (message(USER, part(tool_result=content_pb2.ToolResult(tool_call_id="x", content="y"))),),
        (message(ASSISTANT, part(tool_call=content_pb2.ToolCall(name="f"))),),
        (message(ASSISTANT, part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG))),),
    ],
    ids=[
        "no-messages",
        "empty-message",
        "no-role",
        "tool-result-in-user",
        "call-without-id",
        "assistant-image",
    ],
)
async def test_invalid_input_is_rejected_before_any_upstream_call(
    venice_provider, venice_fake, request_messages
):
    request = chat_pb2.CompleteRequest(model="venice/x", messages=request_messages)
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(request, call_ctx(MODEL))
    assert caught.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(GatewayError):
        await collect(venice_provider.stream_chat(request, call_ctx(MODEL)))
    assert venice_fake.requests == []
