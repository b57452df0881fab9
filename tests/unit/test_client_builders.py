"""ChatRequestBuilder and the message/tool helpers of homa_client.builders."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_client import (
    ChatRequestBuilder,
    assistant_message,
    coercion,
    image_part,
    tool,
    tool_call,
    tool_choice,
    tool_result,
    user_message,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_build_sets_messages_sampling_and_options() -> None:
    request = (
        ChatRequestBuilder("openai/gpt-4o-mini")
        .system("Be terse.")
        .user("Hello")
        .assistant("Hi!")
        .user("Weather?")
        .temperature(0.2)
        .top_p(0.9)
        .max_output_tokens(100)
        .stop("END", "STOP")
        .seed(7)
        .fallback("mock/echo", "mock/tool")
        .timeout(12.5)
        .first_token_timeout(2)
        .cache("off")
        .priority("high")
        .labels(team="search")
        .end_user("user-1")
        .build()
    )

    assert request.model == "openai/gpt-4o-mini"
    assert [m.role for m in request.messages] == [
        content_pb2.ROLE_SYSTEM,
        content_pb2.ROLE_USER,
        content_pb2.ROLE_ASSISTANT,
        content_pb2.ROLE_USER,
    ]
    assert request.messages[0].parts[0].text == "Be terse."
    assert request.temperature == pytest.approx(0.2)
    assert request.max_output_tokens == 100
    assert list(request.stop) == ["END", "STOP"]
    assert request.seed == 7
    assert list(request.options.fallback_models) == ["mock/echo", "mock/tool"]
    assert request.options.timeout.ToMilliseconds() == 12500
    assert request.options.first_token_timeout.seconds == 2
    assert request.options.cache == chat_pb2.CACHE_MODE_OFF
    assert request.options.priority == chat_pb2.PRIORITY_HIGH
    assert dict(request.metadata) == {"team": "search"}
    assert request.user == "user-1"


def test_unset_sampling_fields_stay_unset() -> None:
    request = ChatRequestBuilder("m").user("x").build()

    for name in ("temperature", "top_p", "max_output_tokens", "seed", "top_k", "parallel_tool_calls"):
        assert not request.HasField(name), name
    assert not request.HasField("options")


def test_build_returns_independent_copies() -> None:
    builder = ChatRequestBuilder("m").user("first")
    first = builder.build()
    builder.user("second")

    assert len(first.messages) == 1
    assert len(builder.build().messages) == 2


def test_build_stream_is_wire_identical() -> None:
    builder = ChatRequestBuilder("m").user("x").temperature(0.5).json_object()

    stream = builder.build_stream()

    assert isinstance(stream, chat_pb2.StreamCompleteRequest)
    assert stream.SerializeToString() == builder.build().SerializeToString()


def test_tools_json_schema_and_tool_choice() -> None:
    request = (
        ChatRequestBuilder("m")
        .user("x")
        .tool("get_weather", "Current weather", WEATHER_SCHEMA, strict=True)
        .tool(tool("noop", "Does nothing"))
        .tool_choice("get_weather")
        .parallel_tool_calls(False)
        .json_schema("answer", {"type": "object", "properties": {"a": {"type": "integer"}}})
        .build()
    )

    weather, noop = request.tools
    assert json_format.MessageToDict(weather.parameters) == WEATHER_SCHEMA
    assert weather.strict
    assert json_format.MessageToDict(noop.parameters) == {"type": "object", "properties": {}}
    assert request.tool_choice == content_pb2.ToolChoice(
        mode=content_pb2.ToolChoice.MODE_NAMED, name="get_weather"
    )
    assert request.parallel_tool_calls is False
    assert request.response_format.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA
    assert request.response_format.schema_name == "answer"
    assert request.response_format.strict


@pytest.mark.parametrize(
    ("choice", "mode"),
    [
        ("auto", content_pb2.ToolChoice.MODE_AUTO),
        ("none", content_pb2.ToolChoice.MODE_NONE),
        ("required", content_pb2.ToolChoice.MODE_REQUIRED),
    ],
)
def test_tool_choice_modes(choice: str, mode: int) -> None:
    assert tool_choice(choice).mode == mode


def test_consecutive_tool_results_share_one_tool_message() -> None:
    calls = [tool_call("get_weather", {"city": "Paris"}, "c1"), tool_call("get_time", "{}", "c2")]
    request = (
        ChatRequestBuilder("m")
        .user("x")
        .assistant(tool_calls=calls)
        .tool_result("c1", {"temp_c": 21}, name="get_weather")
        .tool_result("c2", "12:00", is_error=False)
        .build()
    )

    assistant, tool_message = request.messages[1:]
    assert [p.tool_call.arguments_json for p in assistant.parts] == ['{"city":"Paris"}', "{}"]
    assert tool_message.role == content_pb2.ROLE_TOOL
    assert [(p.tool_result.tool_call_id, p.tool_result.content) for p in tool_message.parts] == [
        ("c1", '{"temp_c": 21}'),
        ("c2", "12:00"),
    ]


def test_user_message_with_images(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    data_url = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0").decode()

    message = user_message("What is this?", images=["https://example.com/cat.png", PNG, path, data_url])

    kinds = [part.WhichOneof("kind") for part in message.parts]
    assert kinds == ["text", "file_uri", "inline_data", "inline_data", "inline_data"]
    assert message.parts[1].file_uri.uri == "https://example.com/cat.png"
    assert message.parts[2].inline_data.mime_type == "image/png"
    assert message.parts[3].inline_data.data == PNG
    assert message.parts[4].inline_data.mime_type == "image/jpeg"


def test_image_part_detail_and_unknown_bytes() -> None:
    assert image_part(PNG, detail="low").inline_data.detail == content_pb2.IMAGE_DETAIL_LOW
    assert image_part(b"????", mime_type="image/bmp").inline_data.mime_type == "image/bmp"
    with pytest.raises(ValueError, match="image type"):
        image_part(b"????")
    with pytest.raises(ValueError, match="detail"):
        image_part(PNG, detail="ultra")


@pytest.mark.parametrize(
    "call",
    [
        lambda: user_message(""),
        assistant_message,
        lambda: tool_result("", "x"),
        lambda: ChatRequestBuilder("m").json_schema("", {}),
        lambda: ChatRequestBuilder("m").cache("sometimes"),
        lambda: ChatRequestBuilder("m").priority("urgent"),
        lambda: ChatRequestBuilder("m").reasoning("extreme"),
        lambda: ChatRequestBuilder("m").timeout(-1),
        lambda: tool_choice(""),
    ],
)
def test_programming_mistakes_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_reasoning_and_extra_body() -> None:
    request = (
        ChatRequestBuilder("m")
        .user("x")
        .reasoning("high", budget_tokens=2048, include=True)
        .extra_body({"mock": {"text": "hi"}})
        .build()
    )

    assert request.reasoning.effort == chat_pb2.REASONING_EFFORT_HIGH
    assert request.reasoning.budget_tokens == 2048
    assert json_format.MessageToDict(request.provider_options.extra_body) == {"mock": {"text": "hi"}}


def test_converse_start_and_count_tokens_from_builder() -> None:
    builder = ChatRequestBuilder("m").system("s").tool("t", "d").temperature(0.1).max_output_tokens(5)

    start = builder.build_converse_start()
    count = coercion.count_tokens_request(builder)

    assert start.model == "m"
    assert start.temperature == pytest.approx(0.1)
    assert start.max_output_tokens == 5
    assert [t.name for t in start.tools] == ["t"]
    assert count.model == "m"
    assert len(count.messages) == 1
    assert [t.name for t in count.tools] == ["t"]


def test_coercion_accepts_either_request_type() -> None:
    builder = ChatRequestBuilder("m").user("x")
    complete, stream = builder.build(), builder.build_stream()

    assert coercion.complete_request(complete) is complete
    assert coercion.stream_request(stream) is stream
    assert coercion.complete_request(stream) == complete
    assert coercion.stream_request(complete) == stream
    with pytest.raises(TypeError):
        coercion.complete_request("not a request")  # type: ignore[arg-type]


def test_converse_inputs() -> None:
    assert coercion.converse_start("mock/echo").model == "mock/echo"
    assert coercion.user_turn("hi").message.parts[0].text == "hi"
    results = coercion.tool_results({"c1": {"ok": True}, "c2": "plain"}).tool_results.results
    assert [(r.tool_call_id, r.content) for r in results] == [("c1", '{"ok": true}'), ("c2", "plain")]


@given(text=st.text(min_size=1), temperature=st.floats(min_value=0, max_value=2))
def test_any_text_round_trips_through_the_wire(text: str, temperature: float) -> None:
    request = ChatRequestBuilder("m").user(text).temperature(temperature).build()

    decoded = chat_pb2.CompleteRequest.FromString(request.SerializeToString())

    assert decoded.messages[0].parts[0].text == text
    assert decoded.temperature == temperature
