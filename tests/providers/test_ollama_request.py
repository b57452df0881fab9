"""homa request -> Ollama `/api/chat` body: every feature, every refusal, and what reaches the wire.

Every body built here is also run through the spec check (openapi-core plus the documented-fields
check of `ollama_spec`), so a translation that drifts from Ollama's API fails here.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import SecretStr

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.ollama import OllamaProvider
from homa_server.providers.ollama.chat_request import RequestDefaults, build_chat_body
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    OLLAMA_TEST_KEY,
    FakeOllama,
    ollama_fake_fixture,
    ollama_provider_fixture,
    ollama_settings,
    ollama_upstream_fixture,
)
from tests.providers.ollama_spec import validate_chat_body
from tests.strategies import PNG_1X1

USER = content_pb2.ROLE_USER
ASSISTANT = content_pb2.ROLE_ASSISTANT
TOOL = content_pb2.ROLE_TOOL
PNG_B64 = base64.b64encode(PNG_1X1).decode()


def build(request: chat_pb2.CompleteRequest, *, stream: bool = False, **defaults: Any) -> dict[str, Any]:
    body = build_chat_body(request, "llama3.2", RequestDefaults(**defaults), stream=stream)
    assert validate_chat_body(body) == []
    return body


def refused(request: chat_pb2.CompleteRequest) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        build_chat_body(request, "llama3.2", RequestDefaults(), stream=False)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    return caught.value


def violation(error: GatewayError) -> str:
    assert len(error.field_violations) == 1
    return error.field_violations[0].field


def weather_tool(**fields: Any) -> content_pb2.Tool:
    tool = content_pb2.Tool(name="get_weather", description="Current weather", **fields)
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return tool


def call_part(call_id: str, name: str, arguments: str) -> content_pb2.Part:
    return content_pb2.Part(tool_call=content_pb2.ToolCall(id=call_id, name=name, arguments_json=arguments))


def result_part(call_id: str, content: str, name: str = "") -> content_pb2.Part:
    return content_pb2.Part(
        tool_result=content_pb2.ToolResult(tool_call_id=call_id, name=name, content=content)
    )


# ---- basics ------------------------------------------------------------------------------------


def test_minimal_unary_body_says_stream_false():
    assert build(chat_request()) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
    }


def test_stream_body_says_stream_true():
    assert build(chat_request(), stream=True)["stream"] is True


def test_system_developer_and_history():
    request = chat_request(
        message(content_pb2.ROLE_SYSTEM, "Be brief."),
        message(content_pb2.ROLE_DEVELOPER, "Answer in French."),
        message(USER, "why is the sky blue?"),
        message(ASSISTANT, "due to rayleigh scattering."),
        message(USER, "how is that different than mie scattering?", name="alice"),
    )
    assert build(request)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "why is the sky blue?"},
        {"role": "assistant", "content": "due to rayleigh scattering."},
        {"role": "user", "content": "how is that different than mie scattering?"},  # no name field
    ]


def test_several_text_parts_are_joined_with_newlines():
    request = chat_request(message(USER, "first", "second"), message(ASSISTANT, "a", "b"))
    assert [m["content"] for m in build(request)["messages"]] == ["first\nsecond", "a\nb"]


# ---- tools -------------------------------------------------------------------------------------


def test_tools_are_openai_style_functions():
    bare = content_pb2.Tool(name="ping")
    request = chat_request(tools=[weather_tool(strict=True), bare])
    assert build(request)["tools"] == [
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
        # the spec requires `parameters`; a tool without a schema takes no arguments
        {
            "type": "function",
            "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
        },
    ]


@pytest.mark.parametrize(
    "mode", [content_pb2.ToolChoice.MODE_UNSPECIFIED, content_pb2.ToolChoice.MODE_AUTO], ids=["unset", "auto"]
)
def test_auto_tool_choice_sends_the_tools(mode):
    request = chat_request(tools=[weather_tool()], tool_choice=content_pb2.ToolChoice(mode=mode))
    body = build(request)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert "tool_choice" not in body


def test_tool_choice_none_sends_no_tools():
    request = chat_request(
        tools=[weather_tool()], tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE)
    )
    assert "tools" not in build(request)


@pytest.mark.parametrize(
    "choice",
    [
        content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
        content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="get_weather"),
    ],
    ids=["required", "named"],
)
def test_forced_tool_choice_is_refused(choice):
    error = refused(chat_request(tools=[weather_tool()], tool_choice=choice))
    assert violation(error) == "tool_choice"
    assert "Ollama cannot force a tool call" in error.message


def test_parallel_tool_calls_false_is_refused_and_true_is_the_default():
    error = refused(chat_request(tools=[weather_tool()], parallel_tool_calls=False))
    assert violation(error) == "parallel_tool_calls"
    body = build(chat_request(tools=[weather_tool()], parallel_tool_calls=True))
    assert "parallel_tool_calls" not in body


def test_tool_round_trip_history():
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(
            ASSISTANT,
            call_part("call_0", "get_weather", '{"city": "Paris"}'),
            call_part("call_1", "get_weather", '{"city":"Rome"}'),
        ),
        message(TOOL, result_part("call_0", "21 C", name="get_weather"), result_part("call_1", "25 C")),
        tools=[weather_tool()],
    )
    assert build(request)["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            ],
        },
        {"role": "tool", "content": "21 C", "tool_name": "get_weather"},
        # no name on the result: taken from the call it answers
        {"role": "tool", "content": "25 C", "tool_name": "get_weather"},
    ]


def test_tool_result_for_an_unknown_call_has_no_tool_name():
    request = chat_request(message(USER, "x"), message(TOOL, result_part("elsewhere", "42")))
    assert build(request)["messages"][1] == {"role": "tool", "content": "42"}


def test_empty_tool_arguments_become_an_empty_object():
    request = chat_request(message(USER, "x"), message(ASSISTANT, call_part("c", "ping", "")))
    assert build(request)["messages"][1]["tool_calls"] == [{"function": {"name": "ping", "arguments": {}}}]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'], ids=["malformed", "array", "string"])
def test_tool_arguments_must_be_a_json_object(arguments):
    request = chat_request(message(USER, "x"), message(ASSISTANT, "ok", call_part("c", "f", arguments)))
    assert violation(refused(request)) == "messages[1].parts[1].tool_call.arguments_json"


# ---- structured output -------------------------------------------------------------------------


def test_json_object_format():
    request = chat_request(
        response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT)
    )
    assert build(request)["format"] == "json"


def test_json_schema_format_sends_the_schema_itself():
    fmt = content_pb2.ResponseFormat(
        type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="person", strict=True
    )
    fmt.json_schema.update(
        {
            "type": "object",
            "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
            "required": ["age", "available"],
        }
    )
    assert build(chat_request(response_format=fmt))["format"] == {
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    }


def test_text_format_sends_nothing():
    request = chat_request(
        response_format=content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_TEXT)
    )
    assert "format" not in build(request)


# ---- media and documents -----------------------------------------------------------------------


def test_inline_images_are_raw_base64():
    image = content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG_1X1))
    jpeg = content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/jpeg", data=b"\xff\xd8\xff"))
    body = build(chat_request(message(USER, "what is in this image?", image, jpeg)))
    assert body["messages"] == [
        {
            "role": "user",
            "content": "what is in this image?",
            "images": [PNG_B64, base64.b64encode(b"\xff\xd8\xff").decode()],
        }
    ]
    assert not body["messages"][0]["images"][0].startswith("data:")


def test_image_data_url_is_unwrapped():
    part = content_pb2.Part(file_uri=content_pb2.FileUri(uri=f"data:image/png;base64,{PNG_B64}"))
    assert build(chat_request(message(USER, "look", part)))["messages"][0]["images"] == [PNG_B64]


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (
            content_pb2.Part(
                file_uri=content_pb2.FileUri(uri="https://example.com/cat.png", mime_type="image/png")
            ),
            "messages[0].parts[1].file_uri.uri",
        ),
        (
            content_pb2.Part(file_uri=content_pb2.FileUri(uri="data:text/plain;base64,aGk=")),
            "messages[0].parts[1].file_uri.uri",
        ),
        (
            content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="audio/wav", data=b"RIFF")),
            "messages[0].parts[1].inline_data.mime_type",
        ),
        (
            content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/svg+xml", data=b"<svg/>")),
            "messages[0].parts[1].inline_data.mime_type",
        ),
        (
            content_pb2.Part(document=content_pb2.Document(mime_type="application/pdf", data=b"%PDF-1.7")),
            "messages[0].parts[1].document",
        ),
        (
            content_pb2.Part(
                document=content_pb2.Document(mime_type="text/plain", uri="https://example.com/a.txt")
            ),
            "messages[0].parts[1].document.uri",
        ),
    ],
    ids=["https-uri", "non-image-data-url", "audio", "svg", "pdf", "document-by-uri"],
)
def test_media_ollama_cannot_take_is_refused(part, field):
    error = refused(chat_request(message(USER, "read this", part)))
    assert violation(error) == field


def test_pdf_refusal_explains_itself():
    part = content_pb2.Part(document=content_pb2.Document(mime_type="application/pdf", data=b"%PDF-1.7"))
    assert "PDF" in refused(chat_request(message(USER, part))).message


def test_text_documents_are_inlined_with_their_title():
    doc = content_pb2.Part(
        document=content_pb2.Document(mime_type="text/markdown", data=b"# Notes\nok", title="notes.md")
    )
    text = content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="application/json", data=b'{"a":1}'))
    body = build(chat_request(message(USER, "summarise", doc, text)))
    assert body["messages"][0]["content"] == 'summarise\nnotes.md\n\n# Notes\nok\n{"a":1}'


def test_text_must_be_utf8():
    doc = content_pb2.Part(document=content_pb2.Document(mime_type="text/plain", data=b"\xff\xfe"))
    assert violation(refused(chat_request(message(USER, doc)))) == "messages[0].parts[0].document.data"


# ---- sampling, defaults and vendor extras ------------------------------------------------------


def test_every_sampling_option():
    request = chat_request(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_output_tokens=100,
        stop=["\n", "user:"],
        seed=42,
        presence_penalty=1.5,
        frequency_penalty=1.0,
    )
    assert build(request)["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "num_predict": 100,
        "stop": ["\n", "user:"],
        "seed": 42,
        "presence_penalty": 1.5,
        "frequency_penalty": 1.0,
    }


def test_settings_defaults_and_request_values():
    body = build(
        chat_request(temperature=0.0),
        keep_alive="10m",
        options={"num_ctx": 8192, "temperature": 0.7, "repeat_penalty": 1.1},
    )
    assert body["keep_alive"] == "10m"
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.0, "repeat_penalty": 1.1}


def test_no_options_object_when_nothing_is_set():
    assert "options" not in build(chat_request())
    assert "keep_alive" not in build(chat_request())


def test_extra_body_is_merged_but_cannot_change_the_protocol():
    request = chat_request(temperature=0.5)
    request.provider_options.extra_body.update(
        {
            "think": False,
            "logprobs": True,
            "stream": True,
            "model": "other",
            "keep_alive": 0,
            "options": {"num_ctx": 4096, "temperature": 1.0},
        }
    )
    body = build(request, keep_alive="10m", options={"num_ctx": 2048, "min_p": 0.05})
    assert body["stream"] is False  # the adapter parses one JSON answer here
    assert body["model"] == "llama3.2"
    assert body["think"] is False
    assert body["logprobs"] is True
    assert body["keep_alive"] == 0  # the caller's extra wins over the settings default
    assert body["options"] == {"num_ctx": 4096, "min_p": 0.05, "temperature": 0.5}


# ---- reasoning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        (chat_pb2.REASONING_EFFORT_LOW, "low"),
        (chat_pb2.REASONING_EFFORT_MEDIUM, "medium"),
        (chat_pb2.REASONING_EFFORT_HIGH, "high"),
    ],
)
def test_reasoning_effort_is_a_think_level(effort, think):
    assert build(chat_request(reasoning=chat_pb2.ReasoningOptions(effort=effort)))["think"] == think


def test_reasoning_include_turns_thinking_on():
    assert build(chat_request(reasoning=chat_pb2.ReasoningOptions(include=True)))["think"] is True
    assert "think" not in build(chat_request())


def test_minimal_effort_and_budget_are_refused():
    minimal = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_MINIMAL))
    assert violation(refused(minimal)) == "reasoning.effort"
    budget = chat_request(reasoning=chat_pb2.ReasoningOptions(include=True, budget_tokens=1024))
    assert violation(refused(budget)) == "reasoning.budget_tokens"


def test_reasoning_goes_back_as_thinking_without_signatures():
    thought = content_pb2.Part(
        reasoning=content_pb2.Reasoning(text="1+1 is 2.", signature=b"sig-from-elsewhere")
    )
    redacted = content_pb2.Part(reasoning=content_pb2.Reasoning(signature=b"opaque", redacted=True))
    request = chat_request(
        message(USER, "What is 1+1?"), message(ASSISTANT, thought, redacted, "2"), message(USER, "And 2+2?")
    )
    assert build(request)["messages"][1] == {"role": "assistant", "content": "2", "thinking": "1+1 is 2."}


# ---- invalid input never reaches the upstream --------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        chat_pb2.CompleteRequest(model="ollama/llama3.2"),
        chat_request(message(USER, "x"), temperature=3.0),
        chat_request(tools=[content_pb2.Tool(name="bad name!")]),
        chat_request(
            tools=[weather_tool()],
            tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
        ),
        chat_request(message(USER, content_pb2.Part(file_uri=content_pb2.FileUri(uri="https://x/y.png")))),
    ],
    ids=["no-messages", "temperature", "tool-name", "required-tool", "file-uri"],
)
async def test_invalid_input_sends_nothing(
    ollama_provider: OllamaProvider, ollama_fake: FakeOllama, request_
):
    with pytest.raises(GatewayError) as unary:
        await ollama_provider.complete_chat(request_, call_ctx("llama3.2"))
    with pytest.raises(GatewayError) as streamed:
        await collect(ollama_provider.stream_chat(request_, call_ctx("llama3.2")))
    assert unary.value.code == streamed.value.code == Code.INVALID_ARGUMENT
    assert ollama_fake.requests == []


# ---- the wire: URL, headers, authentication ----------------------------------------------------


async def test_local_server_gets_no_authorization(ollama_provider: OllamaProvider, ollama_fake: FakeOllama):
    await ollama_provider.complete_chat(chat_request(), call_ctx("llama3.2", request_id="req-42"))
    sent = ollama_fake.last
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert "authorization" not in sent.headers
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "req-42"
    assert sent.body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
    }


async def test_cloud_key_is_sent_as_bearer(ollama_fake: FakeOllama):
    ollama_fake.require_key = OLLAMA_TEST_KEY
    settings = ollama_settings(
        ollama_fake.base_url, api_key=SecretStr(OLLAMA_TEST_KEY), headers={"X-Tenant": "t1"}
    )
    provider = OllamaProvider("ollama-cloud", settings)
    try:
        response = await provider.complete_chat(chat_request(), call_ctx("gpt-oss:120b"))
        events = await collect(provider.stream_chat(chat_request(), call_ctx("gpt-oss:120b")))
        assert await provider.list_models()
    finally:
        await provider.aclose()
    assert response.message.parts[0].text
    assert events[-1].HasField("finish")
    assert {r.headers["authorization"] for r in ollama_fake.requests} == {f"Bearer {OLLAMA_TEST_KEY}"}
    assert ollama_fake.last.headers["x-tenant"] == "t1"


async def test_options_from_settings_reach_the_wire(ollama_fake: FakeOllama):
    settings = ollama_settings(
        ollama_fake.base_url, options={"keep_alive": -1, "model_options": {"num_ctx": 8192, "use_mmap": True}}
    )
    provider = OllamaProvider("ollama", settings)
    try:
        await collect(provider.stream_chat(chat_request(max_output_tokens=64), call_ctx("llama3.2")))
    finally:
        await provider.aclose()
    assert ollama_fake.last.body["keep_alive"] == -1
    assert ollama_fake.last.body["options"] == {"num_ctx": 8192, "use_mmap": True, "num_predict": 64}


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"keep_alive": "five minutes"}, "providers.ollama.options.keep_alive"),
        ({"keep_alive": True}, "providers.ollama.options.keep_alive"),
        ({"model_options": {"num_ctx": "big"}}, "providers.ollama.options.model_options.num_ctx"),
        ({"model_options": {"nmu_ctx": 4096}}, "providers.ollama.options.model_options.nmu_ctx"),
        ({"rate_limit_retry_after_s": -1}, "providers.ollama.options.rate_limit_retry_after_s"),
        ({"keepalive": "5m"}, "providers.ollama.options.keepalive"),
    ],
    ids=["duration", "bool", "type", "typo", "negative", "unknown"],
)
def test_bad_options_fail_at_construction(options, path):
    with pytest.raises(ValueError, match="^" + path.replace(".", r"\.") + ": "):
        OllamaProvider("ollama", ollama_settings("http://127.0.0.1:9", options=options))


async def test_good_options_are_accepted():
    provider_settings = ollama_settings(
        "http://127.0.0.1:9",
        options={"keep_alive": "1h30m", "rate_limit_retry_after_s": 2, "model_options": {"stop": ["x"]}},
    )
    provider = OllamaProvider("ollama", provider_settings)
    await provider.aclose()
    assert (provider.name, provider.kind) == ("ollama", "ollama")
