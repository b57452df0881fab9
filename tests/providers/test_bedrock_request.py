"""homa request -> Converse body: every feature, each body checked against botocore's service model,
and invalid input rejected before any upstream request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.bedrock.chat_request import build_converse_body, build_count_tokens_body
from tests.providers.bedrock_spec import validate_request
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes.bedrock_upstream import (
    MODEL,
    FakeBedrock,
    bedrock_settings,
    checked_fake,
    running_fake,
)
from tests.strategies import PNG_1X1

USER, ASSISTANT, TOOL = content_pb2.ROLE_USER, content_pb2.ROLE_ASSISTANT, content_pb2.ROLE_TOOL
SYSTEM, DEVELOPER = content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER
PDF = b"%PDF-1.4 fake"


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


def body_of(request: chat_pb2.CompleteRequest) -> dict[str, Any]:
    """The Converse body, asserted valid against the service model."""
    body = build_converse_body(request)
    assert validate_request("converse", MODEL, orjson.loads(orjson.dumps(body))) == []
    return body


def rejected(request: chat_pb2.CompleteRequest) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        build_converse_body(request)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    return caught.value


def field_of(error: GatewayError) -> str:
    return error.field_violations[0].field


def weather_tool(**fields: Any) -> content_pb2.Tool:
    tool = content_pb2.Tool(name="get_weather", description="Current weather", **fields)
    tool.parameters.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return tool


def call_part(call_id: str = "tooluse_1", arguments: str = '{"city": "Paris"}') -> content_pb2.Part:
    return content_pb2.Part(
        tool_call=content_pb2.ToolCall(id=call_id, name="get_weather", arguments_json=arguments)
    )


def result_part(
    call_id: str = "tooluse_1", content: str = '{"temp_c": 21}', **fields: Any
) -> content_pb2.Part:
    return content_pb2.Part(
        tool_result=content_pb2.ToolResult(tool_call_id=call_id, content=content, **fields)
    )


def tool_history(*results: content_pb2.Part) -> list[content_pb2.Message]:
    return [
        message(USER, "Weather in Paris?"),
        message(ASSISTANT, call_part()),
        message(TOOL, *(results or (result_part(),))),
    ]


# ---- messages ---------------------------------------------------------------------------------


def test_minimal_text_request():
    assert body_of(chat_request()) == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


def test_system_and_developer_messages_become_system_blocks_in_order():
    request = chat_request(
        message(SYSTEM, "Be brief."),
        message(USER, "Hi"),
        message(DEVELOPER, "Answer in French.", "No emojis."),
    )
    body = body_of(request)
    assert body["system"] == [{"text": "Be brief."}, {"text": "Answer in French."}, {"text": "No emojis."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]


def test_multi_turn_keeps_roles_and_order():
    request = chat_request(message(USER, "Hi"), message(ASSISTANT, "Hello!"), message(USER, "How are you?"))
    assert [(m["role"], m["content"]) for m in body_of(request)["messages"]] == [
        ("user", [{"text": "Hi"}]),
        ("assistant", [{"text": "Hello!"}]),
        ("user", [{"text": "How are you?"}]),
    ]


def test_consecutive_same_role_messages_are_merged():
    request = chat_request(message(USER, "one"), message(USER, "two"), message(ASSISTANT, "three"))
    assert body_of(request)["messages"] == [
        {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
        {"role": "assistant", "content": [{"text": "three"}]},
    ]


def test_blank_text_is_rejected():
    error = rejected(chat_request(message(USER, "  ")))
    assert field_of(error) == "messages[0].parts[0].text"


# ---- tools ------------------------------------------------------------------------------------


def test_tool_definitions():
    bare = content_pb2.Tool(name="ping")
    request = chat_request(tools=[weather_tool(strict=True), bare])
    assert body_of(request)["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "inputSchema": {
                        "json": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        }
                    },
                    "strict": True,
                }
            },
            {"toolSpec": {"name": "ping", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        ]
    }


@pytest.mark.parametrize(
    ("mode", "name", "expected"),
    [
        (content_pb2.ToolChoice.MODE_UNSPECIFIED, "", None),
        (content_pb2.ToolChoice.MODE_AUTO, "", {"auto": {}}),
        (content_pb2.ToolChoice.MODE_REQUIRED, "", {"any": {}}),
        (content_pb2.ToolChoice.MODE_NAMED, "get_weather", {"tool": {"name": "get_weather"}}),
    ],
    ids=["unspecified", "auto", "required", "named"],
)
def test_tool_choice(mode, name, expected):
    request = chat_request(tools=[weather_tool()], tool_choice=content_pb2.ToolChoice(mode=mode, name=name))
    assert body_of(request)["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_sends_no_tools():
    request = chat_request(
        tools=[weather_tool()], tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE)
    )
    assert "toolConfig" not in body_of(request)


def test_tool_choice_none_with_tool_history_is_rejected():
    request = chat_request(
        *tool_history(),
        tools=[weather_tool()],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE),
    )
    assert field_of(rejected(request)) == "tool_choice"


def test_tool_history_without_tools_is_rejected():
    assert field_of(rejected(chat_request(*tool_history()))) == "tools"


@pytest.mark.parametrize(
    ("choice", "field"),
    [
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED), "tool_choice"),
        (content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NAMED, name="nope"), "tool_choice.name"),
    ],
)
def test_tool_choice_that_cannot_be_met(choice, field):
    tools = [weather_tool()] if choice.mode == content_pb2.ToolChoice.MODE_NAMED else []
    assert field_of(rejected(chat_request(tools=tools, tool_choice=choice))) == field


@pytest.mark.parametrize("name", ["bad name!", "", "x" * 65])
def test_invalid_tool_names_are_rejected(name):
    assert field_of(rejected(chat_request(tools=[content_pb2.Tool(name=name)]))) == "tools[0].name"


def test_duplicate_tool_names_are_rejected():
    assert field_of(rejected(chat_request(tools=[weather_tool(), weather_tool()]))) == "tools[1].name"


def test_tool_call_and_result_round_trip():
    body = body_of(chat_request(*tool_history(), tools=[weather_tool()]))
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp_c": 21}}]}}],
        },
    ]


@pytest.mark.parametrize(
    ("content", "is_error", "expected"),
    [
        ("sunny, 21 C", False, {"toolUseId": "tooluse_1", "content": [{"text": "sunny, 21 C"}]}),
        ("[1, 2]", False, {"toolUseId": "tooluse_1", "content": [{"text": "[1, 2]"}]}),
        ("{not json", False, {"toolUseId": "tooluse_1", "content": [{"text": "{not json"}]}),
        ("", False, {"toolUseId": "tooluse_1", "content": []}),
        (
            "city not found",
            True,
            {"toolUseId": "tooluse_1", "content": [{"text": "city not found"}], "status": "error"},
        ),
    ],
    ids=["text", "json-array-as-text", "broken-json", "empty", "error"],
)
def test_tool_result_content(content, is_error, expected):
    body = body_of(
        chat_request(*tool_history(result_part(content=content, is_error=is_error)), tools=[weather_tool()])
    )
    assert body["messages"][2]["content"] == [{"toolResult": expected}]


def test_parallel_tool_calls_and_results():
    request = chat_request(
        message(USER, "Weather in Paris and Rome?"),
        message(ASSISTANT, "Checking.", call_part("tooluse_a"), call_part("tooluse_b", '{"city": "Rome"}')),
        message(TOOL, result_part("tooluse_a", "21")),
        message(TOOL, result_part("tooluse_b", "25")),
        message(USER, "Thanks, and tomorrow?"),
        tools=[weather_tool()],
    )
    messages = body_of(request)["messages"]
    assert [block.keys() for block in messages[1]["content"]] == [{"text"}, {"toolUse"}, {"toolUse"}]
    assert messages[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "21"}]}},
            {"toolResult": {"toolUseId": "tooluse_b", "content": [{"text": "25"}]}},
            {"text": "Thanks, and tomorrow?"},
        ],
    }


def test_tool_results_lead_a_merged_user_message():
    request = chat_request(
        message(USER, "Weather?"),
        message(ASSISTANT, call_part()),
        message(USER, "Also, hurry."),
        message(TOOL, result_part()),
        tools=[weather_tool()],
    )
    assert [next(iter(block)) for block in body_of(request)["messages"][2]["content"]] == [
        "toolResult",
        "text",
    ]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [("", {}), ("  ", {}), ('{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]})],
)
def test_tool_call_arguments(arguments, expected):
    body = body_of(
        chat_request(
            *tool_history()[:1], message(ASSISTANT, call_part(arguments=arguments)), tools=[weather_tool()]
        )
    )
    assert body["messages"][1]["content"][0]["toolUse"]["input"] == expected


@pytest.mark.parametrize("arguments", ["{broken", "[1]", '"text"'])
def test_tool_call_arguments_must_be_an_object(arguments):
    request = chat_request(
        message(USER, "x"), message(ASSISTANT, call_part(arguments=arguments)), tools=[weather_tool()]
    )
    assert field_of(rejected(request)) == "messages[1].parts[0].tool_call.arguments_json"


@pytest.mark.parametrize("call_id", ["", "call with spaces", "x" * 65])
def test_tool_call_ids_must_fit_bedrock(call_id):
    request = chat_request(message(USER, "x"), message(ASSISTANT, call_part(call_id)), tools=[weather_tool()])
    assert field_of(rejected(request)) == "messages[1].parts[0].tool_call.id"


def test_tool_result_in_a_user_message_is_rejected():
    request = chat_request(message(USER, result_part()), tools=[weather_tool()])
    assert field_of(rejected(request)) == "messages[0].parts[0].tool_result"


def test_text_in_a_tool_message_is_rejected():
    request = chat_request(message(USER, "x"), message(TOOL, "plain"))
    assert field_of(rejected(request)) == "messages[1].parts[0].text"


# ---- media ------------------------------------------------------------------------------------


def inline(mime: str, data: bytes = PNG_1X1) -> content_pb2.Part:
    return content_pb2.Part(inline_data=content_pb2.InlineData(mime_type=mime, data=data))


@pytest.mark.parametrize(
    ("mime", "fmt"),
    [("image/png", "png"), ("image/jpeg", "jpeg"), ("image/jpg", "jpeg"), ("image/webp", "webp")],
)
def test_inline_images(mime, fmt):
    body = body_of(chat_request(message(USER, "What is this?", inline(mime))))
    image = body["messages"][0]["content"][1]["image"]
    assert image["format"] == fmt
    assert (
        image["source"]["bytes"]
        == "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )


def test_image_detail_is_ignored():
    part = content_pb2.Part(
        inline_data=content_pb2.InlineData(
            mime_type="image/png", data=PNG_1X1, detail=content_pb2.IMAGE_DETAIL_HIGH
        )
    )
    assert set(body_of(chat_request(message(USER, "x", part)))["messages"][0]["content"][1]["image"]) == {
        "format",
        "source",
    }


@pytest.mark.parametrize(
    ("mime", "kind", "fmt"),
    [
        ("application/pdf", "document", "pdf"),
        ("text/plain; charset=utf-8", "document", "txt"),
        ("text/csv", "document", "csv"),
        ("video/mp4", "video", "mp4"),
        ("video/quicktime", "video", "mov"),
        ("audio/mpeg", "audio", "mp3"),
        ("audio/wav", "audio", "wav"),
    ],
)
def test_inline_documents_video_and_audio(mime, kind, fmt):
    block = body_of(chat_request(message(USER, "Describe it.", inline(mime, b"data"))))["messages"][0][
        "content"
    ][1]
    assert block[kind]["format"] == fmt
    assert block[kind]["source"] == {"bytes": "ZGF0YQ=="}


@pytest.mark.parametrize("mime", ["image/bmp", "application/zip", ""])
def test_unsupported_inline_media(mime):
    error = rejected(chat_request(message(USER, "x", inline(mime))))
    assert field_of(error) == "messages[0].parts[1].inline_data.mime_type"


def test_empty_inline_data():
    assert field_of(rejected(chat_request(message(USER, "x", inline("image/png", b""))))) == (
        "messages[0].parts[1].inline_data.data"
    )


def document(**fields: Any) -> content_pb2.Part:
    return content_pb2.Part(document=content_pb2.Document(**fields))


def test_pdf_documents_get_valid_unique_names():
    request = chat_request(
        message(
            USER,
            "Compare these.",
            document(mime_type="application/pdf", data=PDF, title="Q3 report.pdf"),
            document(mime_type="application/pdf", data=PDF, title="Q3 report.pdf"),
            document(mime_type="application/pdf", data=PDF),
            document(mime_type="text/markdown", data=b"# notes", title="notes_v2 (draft) [final]!!"),
        )
    )
    blocks = body_of(request)["messages"][0]["content"][1:]
    assert [b["document"]["name"] for b in blocks] == [
        "Q3 report pdf",
        "Q3 report pdf (2)",
        "document",
        "notes v2 (draft) [final]",
    ]
    assert blocks[0]["document"] == {
        "format": "pdf",
        "name": "Q3 report pdf",
        "source": {"bytes": "JVBERi0xLjQgZmFrZQ=="},
    }
    assert blocks[3]["document"]["format"] == "md"


def test_document_from_s3():
    part = document(mime_type="application/pdf", uri="s3://my-bucket/reports/q3.pdf", title="Q3")
    block = body_of(chat_request(message(USER, "Summarise.", part)))["messages"][0]["content"][1]
    assert block == {
        "document": {
            "format": "pdf",
            "name": "Q3",
            "source": {"s3Location": {"uri": "s3://my-bucket/reports/q3.pdf"}},
        }
    }


def test_a_document_needs_a_text_part_in_its_message():
    error = rejected(chat_request(message(USER, document(mime_type="application/pdf", data=PDF))))
    assert field_of(error) == "messages[0].parts"
    assert "text part" in error.message


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (
            document(mime_type="application/pdf", uri="https://example.com/a.pdf"),
            "messages[0].parts[1].document.uri",
        ),
        (document(mime_type="application/pdf"), "messages[0].parts[1].document"),
        (document(mime_type="application/x-tar", data=b"x"), "messages[0].parts[1].document.mime_type"),
        (
            document(mime_type="application/pdf", uri="s3://A_Bad_Bucket/x"),
            "messages[0].parts[1].document.uri",
        ),
    ],
    ids=["https-uri", "no-source", "bad-mime", "bad-bucket"],
)
def test_invalid_documents(part, field):
    assert field_of(rejected(chat_request(message(USER, "Read it.", part)))) == field


def test_documents_are_not_accepted_in_system_messages():
    request = chat_request(
        message(SYSTEM, document(mime_type="application/pdf", data=PDF)), message(USER, "Hi")
    )
    assert field_of(rejected(request)) == "messages[0].parts[0].document"


@pytest.mark.parametrize(
    ("uri", "mime", "block"),
    [
        (
            "s3://bucket-1/cat.png",
            "image/png",
            {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://bucket-1/cat.png"}}}},
        ),
        (
            "s3://bucket-1/cat.jpeg",
            "",
            {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket-1/cat.jpeg"}}}},
        ),
        (
            "s3://bucket-1/clip.mp4",
            "",
            {"video": {"format": "mp4", "source": {"s3Location": {"uri": "s3://bucket-1/clip.mp4"}}}},
        ),
        (
            "s3://bucket-1/a/spec.pdf",
            "application/pdf",
            {
                "document": {
                    "format": "pdf",
                    "name": "spec pdf",
                    "source": {"s3Location": {"uri": "s3://bucket-1/a/spec.pdf"}},
                }
            },
        ),
    ],
    ids=["image", "image-by-extension", "video-by-extension", "document"],
)
def test_file_uris_from_s3(uri, mime, block):
    part = content_pb2.Part(file_uri=content_pb2.FileUri(uri=uri, mime_type=mime))
    assert body_of(chat_request(message(USER, "Look.", part)))["messages"][0]["content"][1] == block


@pytest.mark.parametrize(
    ("uri", "mime", "field"),
    [
        ("https://example.com/cat.png", "image/png", "uri"),
        ("", "image/png", "uri"),
        ("s3://bucket-1/archive.zip", "", "mime_type"),
    ],
)
def test_invalid_file_uris(uri, mime, field):
    part = content_pb2.Part(file_uri=content_pb2.FileUri(uri=uri, mime_type=mime))
    assert (
        field_of(rejected(chat_request(message(USER, "Look.", part))))
        == f"messages[0].parts[1].file_uri.{field}"
    )


# ---- reasoning round-trip ---------------------------------------------------------------------


def reasoning(**fields: Any) -> content_pb2.Part:
    return content_pb2.Part(reasoning=content_pb2.Reasoning(**fields))


def test_reasoning_with_signature_round_trips():
    request = chat_request(
        message(USER, "2+2?"),
        message(ASSISTANT, reasoning(text="Add them.", signature=b"EqQBCkgIARABGAIiQ...sig"), "4"),
        message(USER, "And 3+3?"),
    )
    assert body_of(request)["messages"][1]["content"] == [
        {
            "reasoningContent": {
                "reasoningText": {"text": "Add them.", "signature": "EqQBCkgIARABGAIiQ...sig"}
            }
        },
        {"text": "4"},
    ]


@pytest.mark.parametrize(
    "part",
    [reasoning(signature=b"\x00\xffopaque", redacted=True), reasoning(signature=b"\x00\xffopaque")],
    ids=["redacted", "signature-only-from-a-stream"],
)
def test_redacted_reasoning_round_trips(part):
    request = chat_request(message(USER, "x"), message(ASSISTANT, part, "ok"), message(USER, "y"))
    assert body_of(request)["messages"][1]["content"][0] == {
        "reasoningContent": {"redactedContent": "AP9vcGFxdWU="}
    }


def test_reasoning_without_signature_is_sent_as_text():
    request = chat_request(
        message(USER, "x"), message(ASSISTANT, reasoning(text="hmm"), "ok"), message(USER, "y")
    )
    assert body_of(request)["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "hmm"}}
    }


def test_a_signature_that_is_not_bedrocks_is_rejected():
    request = chat_request(message(USER, "x"), message(ASSISTANT, reasoning(text="t", signature=b"\xff\xfe")))
    assert field_of(rejected(request)) == "messages[1].parts[0].reasoning.signature"


def test_reasoning_controls():
    request = chat_request(
        max_output_tokens=8000,
        reasoning=chat_pb2.ReasoningOptions(
            budget_tokens=4096, effort=chat_pb2.REASONING_EFFORT_HIGH, include=True
        ),
    )
    body = body_of(request)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 4096}}
    assert body["outputConfig"] == {"effort": "high"}
    assert body["inferenceConfig"] == {"maxTokens": 8000}


def test_minimal_effort_is_sent_as_low():
    request = chat_request(reasoning=chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_MINIMAL))
    assert body_of(request)["outputConfig"] == {"effort": "low"}


# ---- structured output, sampling, metadata ----------------------------------------------------


def test_json_schema_output():
    fmt = content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="answer")
    fmt.json_schema.update({"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}})
    body = body_of(chat_request(response_format=fmt))
    structure = body["outputConfig"]["textFormat"]
    assert structure["type"] == "json_schema"
    assert structure["structure"]["jsonSchema"]["name"] == "answer"
    assert orjson.loads(structure["structure"]["jsonSchema"]["schema"]) == {
        "type": "object",
        "properties": {"n": {"type": "integer", "maximum": 3}},
    }


def test_json_object_output_is_rejected():
    fmt = content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT)
    assert field_of(rejected(chat_request(response_format=fmt))) == "response_format.type"


def test_text_output_sends_nothing():
    fmt = content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_TEXT)
    assert "outputConfig" not in body_of(chat_request(response_format=fmt))


def test_sampling_options():
    request = chat_request(max_output_tokens=256, temperature=0.2, top_p=0.9, stop=["END", "\n\n"], top_k=40)
    body = body_of(request)
    assert body["inferenceConfig"] == {
        "maxTokens": 256,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END", "\n\n"],
    }
    assert body["additionalModelRequestFields"] == {"top_k": 40}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seed": 7}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"top_k": 0}, "top_k"),
        ({"stop": ["ok", ""]}, "stop[1]"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"user": "user<script>"}, "user"),
    ],
)
def test_options_bedrock_cannot_take(fields, field):
    assert field_of(rejected(chat_request(**fields))) == field


def test_parallel_tool_calls_true_is_the_default_and_sends_nothing():
    body = body_of(chat_request(tools=[weather_tool()], parallel_tool_calls=True))
    assert set(body) == {"messages", "toolConfig"}


def test_user_goes_to_request_metadata():
    assert body_of(chat_request(user="user-42@example.com"))["requestMetadata"] == {
        "user": "user-42@example.com"
    }


def test_extra_body_is_merged_and_the_adapter_wins():
    request = chat_request(top_k=5)
    request.provider_options.extra_body.update(
        {
            "modelId": "ignored",
            "guardrailConfig": {"guardrailIdentifier": "gr1abc", "guardrailVersion": "1", "trace": "enabled"},
            "performanceConfig": {"latency": "optimized"},
            "additionalModelRequestFields": {
                "top_k": 99,
                "anthropic_beta": ["interleaved-thinking-2025-05-14"],
            },
        }
    )
    body = body_of(request)
    assert "modelId" not in body
    assert body["guardrailConfig"]["guardrailIdentifier"] == "gr1abc"
    assert body["performanceConfig"] == {"latency": "optimized"}
    assert body["additionalModelRequestFields"] == {
        "top_k": 5,
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    }


def test_count_tokens_body():
    request = chat_pb2.CountTokensRequest(
        model="bedrock/x", messages=[message(SYSTEM, "Be brief."), *tool_history()], tools=[weather_tool()]
    )
    body = build_count_tokens_body(request)
    assert validate_request("count-tokens", MODEL, orjson.loads(orjson.dumps(body))) == []
    converse = body["input"]["converse"]
    assert converse["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    assert converse["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_count_tokens_needs_tools_for_tool_history():
    with pytest.raises(GatewayError) as caught:
        build_count_tokens_body(chat_pb2.CountTokensRequest(messages=tool_history()))
    assert caught.value.field_violations[0].field == "tools"


# ---- through the provider: nothing is sent for invalid input -------------------------------------


async def test_invalid_input_sends_nothing(provider, fake):
    bad = chat_request(seed=1)
    for call in (
        lambda: provider.complete_chat(bad, call_ctx(MODEL)),
        lambda: collect(provider.stream_chat(bad, call_ctx(MODEL))),
        lambda: provider.count_tokens(chat_pb2.CountTokensRequest(), call_ctx(MODEL)),
    ):
        with pytest.raises(GatewayError) as caught:
            await call()
        assert caught.value.code == Code.INVALID_ARGUMENT
    assert fake.requests == []


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile%2F"
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0/converse",
        ),
    ],
    ids=["model-id", "arn"],
)
async def test_model_ids_stay_in_one_path_segment(provider, fake, model, path):
    # The '/' of an ARN is escaped; ':' is legal in a path segment and kept, so the signed path is
    # the path on the wire whatever the HTTP stack does with "%3A" (the fake checks the signature).
    await provider.complete_chat(chat_request(), call_ctx(model))
    assert fake.last.path == path
    assert fake.last.model_id == model


@pytest.mark.parametrize("model", ["", "model with spaces", "x@y", "a" * 2049])
async def test_invalid_model_ids_are_rejected_before_sending(provider, fake, model):
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(model))
    assert caught.value.field_violations[0].field == "model"
    assert fake.requests == []


async def test_wire_headers(provider, fake):
    await provider.complete_chat(chat_request(), call_ctx(MODEL))
    headers = fake.last.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "homa-gateway"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEHOMA00001/")
    assert "SignedHeaders=content-type;host;x-amz-date," in headers["authorization"]
    assert fake.last.body == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ((message(SYSTEM, "Be brief."), message(ASSISTANT, "Hello!")), "messages[1].role"),
        ((message(TOOL, result_part()),), "messages[0].role"),
        ((message(SYSTEM, "Be brief."),), "messages"),
    ],
    ids=["assistant-first", "tool-first", "system-only"],
)
def test_conversations_start_with_a_user_turn(messages, field):
    assert field_of(rejected(chat_request(*messages, tools=[weather_tool()]))) == field
