"""Stream assembly, call information and per-call settings of homa_client (no server)."""

from __future__ import annotations

import grpc
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_client import CallInfo, InternalError, StreamAssembler
from homa_client.invocation import CallOptions, CallSettings, channel_options
from homa_client.results import TurnAssembler

Event = chat_pb2.StreamCompleteResponse


def finish(reason: int = usage_pb2.FINISH_REASON_STOP) -> Event:
    return Event(finish=chat_pb2.Finish(reason=reason, raw_reason="stop", id="cmpl-1"))  # type: ignore[arg-type]


def test_assembles_text_reasoning_usage_and_finish() -> None:
    assembler = StreamAssembler()
    for event in [
        Event(route=usage_pb2.Route(provider="p", model="m", attempt=1)),
        Event(delta=chat_pb2.ContentDelta(reasoning="think ")),
        Event(delta=chat_pb2.ContentDelta(reasoning="hard", reasoning_signature=b"sig")),
        Event(delta=chat_pb2.ContentDelta(text="Hello, ")),
        Event(usage=usage_pb2.Usage(input_tokens=3, output_tokens=1, total_tokens=4)),
        Event(delta=chat_pb2.ContentDelta(text="world")),
        Event(usage=usage_pb2.Usage(input_tokens=3, output_tokens=2, total_tokens=5)),
        finish(),
    ]:
        assembler.add(event)

    result = assembler.finish()

    assert result.text == "Hello, world"
    assert result.reasoning == "think hard"
    assert result.reasoning_signature == b"sig"
    assert result.usage.total_tokens == 5  # cumulative: the last one wins
    assert result.route.provider == "p"
    assert (result.id, result.finish_reason_name, result.raw_finish_reason) == ("cmpl-1", "STOP", "stop")
    message = result.message()
    assert [part.WhichOneof("kind") for part in message.parts] == ["reasoning", "text"]
    assert message.parts[0].reasoning.signature == b"sig"
    assert result.to_complete_response().usage.total_tokens == 5


def test_tool_calls_from_fragments_when_no_complete_call_arrives() -> None:
    assembler = StreamAssembler()
    for event in [
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=1, id="c2", name="b", arguments_json="{}")),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="c1", name="a", arguments_json='{"x":')),
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, arguments_json="1}")),
        finish(usage_pb2.FINISH_REASON_TOOL_CALLS),
    ]:
        assembler.add(event)

    calls = assembler.finish().tool_calls

    assert [(c.id, c.name, c.arguments_json) for c in calls] == [("c1", "a", '{"x":1}'), ("c2", "b", "{}")]


def test_complete_tool_calls_win_over_fragments() -> None:
    assembler = StreamAssembler()
    call = content_pb2.ToolCall(id="c1", name="a", arguments_json='{"x":1}')
    assembler.add(
        Event(tool_call_delta=chat_pb2.ToolCallDelta(index=0, id="c1", name="a", arguments_json='{"x"'))
    )
    assembler.add(Event(tool_call=call))
    assembler.add(finish(usage_pb2.FINISH_REASON_TOOL_CALLS))

    assert assembler.finish().tool_calls == [call]


def test_a_stream_without_finish_is_an_error() -> None:
    assembler = StreamAssembler()
    assembler.add(Event(delta=chat_pb2.ContentDelta(text="partial")))
    info = CallInfo(request_id="r1", code=grpc.StatusCode.OK)

    with pytest.raises(InternalError) as caught:
        assembler.finish(info)

    assert caught.value.reason == "INCOMPLETE_STREAM"
    assert caught.value.request_id == "r1"


def test_call_info_from_metadata() -> None:
    info = CallInfo.from_metadata(
        "sent",
        grpc.StatusCode.OK,
        [("homa-request-id", "server-id")],
        [
            ("homa-provider", "openai"),
            ("homa-model", "gpt"),
            ("homa-attempts", "2"),
            ("homa-overhead-ms", "1.5"),
        ],
    )

    assert (info.request_id, info.provider, info.model, info.attempts, info.overhead_ms) == (
        "server-id",
        "openai",
        "gpt",
        2,
        1.5,
    )


def test_call_info_without_gateway_metadata() -> None:
    info = CallInfo.from_metadata("sent", grpc.StatusCode.UNAVAILABLE, None, [("homa-attempts", "x")])

    assert info.request_id == "sent"
    assert info.attempts is None
    assert info.overhead_ms is None


def test_turn_assembler_returns_the_turn_on_turn_complete() -> None:
    assembler = TurnAssembler()
    message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text="hi")])

    assert assembler.add(chat_pb2.ConverseResponse(route=usage_pb2.Route(provider="mock"))) is None
    assert assembler.add(chat_pb2.ConverseResponse(delta=chat_pb2.ContentDelta(text="hi"))) is None
    turn = assembler.add(
        chat_pb2.ConverseResponse(
            turn_complete=chat_pb2.TurnComplete(reason=usage_pb2.FINISH_REASON_STOP, message=message)
        )
    )

    assert turn is not None
    assert turn.text == "hi"
    assert turn.tool_calls == []
    assert turn.route.provider == "mock"
    assert len(turn.events) == 3


def test_call_settings_metadata() -> None:
    settings = CallSettings(api_key="sk-test", metadata={"X-Team": "search"}, timeout=5)

    prepared = settings.prepare(CallOptions(request_id="rid", metadata=[("X-Extra", "1")]))

    assert prepared.metadata == (
        ("x-team", "search"),
        ("authorization", "Bearer sk-test"),
        ("x-extra", "1"),
        ("x-request-id", "rid"),
    )
    assert prepared.timeout == 5
    assert settings.prepare(CallOptions(timeout=1)).timeout == 1
    generated = settings.prepare(CallOptions()).request_id
    assert len(generated) == 32
    assert generated != settings.prepare(CallOptions()).request_id


def test_call_settings_reject_non_positive_timeouts() -> None:
    with pytest.raises(ValueError, match="timeout"):
        CallSettings(api_key=None, metadata=None, timeout=0)


def test_channel_options_override_defaults_by_key() -> None:
    options = dict(channel_options([("grpc.max_receive_message_length", 1024), ("grpc.enable_retries", 0)]))

    assert options["grpc.max_receive_message_length"] == 1024
    assert options["grpc.max_send_message_length"] == 256 * 1024 * 1024
    assert options["grpc.enable_retries"] == 0
    assert options["grpc.primary_user_agent"].startswith("homa-client-python/")


def test_several_reasoning_blocks_round_trip_in_order() -> None:
    assembler = StreamAssembler()
    for delta in (
        chat_pb2.ContentDelta(reasoning="first ", reasoning_index=0),
        chat_pb2.ContentDelta(reasoning="thought", reasoning_index=0),
        chat_pb2.ContentDelta(reasoning_signature=b"sig-0", reasoning_index=0),
        chat_pb2.ContentDelta(reasoning_signature=b"opaque", reasoning_redacted=True, reasoning_index=1),
        chat_pb2.ContentDelta(text="answer"),
    ):
        assembler.add(chat_pb2.StreamCompleteResponse(delta=delta))
    assembler.add(chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish(id="x")))
    message = assembler.finish().message()
    assert [p.reasoning for p in message.parts if p.WhichOneof("kind") == "reasoning"] == [
        content_pb2.Reasoning(text="first thought", signature=b"sig-0"),
        content_pb2.Reasoning(signature=b"opaque", redacted=True),
    ]
    assert message.parts[-1].text == "answer"
