"""The context-window policy (routing/context.py) and the streamed-reply accumulator."""

from __future__ import annotations

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.mock import MockProvider
from homa_server.routing.context import (
    SUMMARY_INSTRUCTIONS,
    Limits,
    TokenMeter,
    fit,
    limits_for,
    summary_request,
    turn_starts,
)
from homa_server.routing.conversation import ReplyBuilder
from homa_server.routing.resolver import Target
from homa_server.rpc.chat import ChatServicer
from homa_server.settings import ProviderSettings

ROLE = content_pb2


def msg(
    role: content_pb2.Role.ValueType, text: str = "", *, call: str = "", result: str = ""
) -> content_pb2.Message:
    message = content_pb2.Message(role=role)
    if text:
        message.parts.add(text=text)
    if call:
        message.parts.add(tool_call=content_pb2.ToolCall(id=call, name="lookup", arguments_json="{}"))
    if result:
        message.parts.add(tool_result=content_pb2.ToolResult(tool_call_id=result, content="42"))
    return message


SYSTEM = msg(ROLE.ROLE_SYSTEM, "You are terse.")
HISTORY = [
    msg(ROLE.ROLE_USER, "look it up please, the first thing"),
    msg(ROLE.ROLE_ASSISTANT, call="c1"),
    msg(ROLE.ROLE_TOOL, result="c1"),
    msg(ROLE.ROLE_ASSISTANT, "it is 42, as the tool says"),
    msg(ROLE.ROLE_USER, "and the second thing, look it up"),
    msg(ROLE.ROLE_ASSISTANT, call="c2"),
    msg(ROLE.ROLE_TOOL, result="c2"),
    msg(ROLE.ROLE_ASSISTANT, "also 42"),
]
METER = TokenMeter("gpt-4o")


def test_turns_start_at_user_messages() -> None:
    assert turn_starts(HISTORY) == [0, 4]
    assert turn_starts(HISTORY[1:]) == [0, 3]  # a history cut by a summary starts a turn where it starts
    assert turn_starts([]) == []


def test_fit_keeps_everything_when_it_fits() -> None:
    new = [msg(ROLE.ROLE_USER, "third")]
    found = fit(METER, [SYSTEM], HISTORY, new, 10_000)
    assert found is not None
    assert found.keep_from == 0
    assert found.tokens == METER.total([SYSTEM, *HISTORY, *new])


@pytest.mark.parametrize("slack", range(0, 60, 3))
def test_fit_drops_whole_turns_oldest_first(slack: int) -> None:
    new = [msg(ROLE.ROLE_USER, "third")]
    last_turn = METER.total([SYSTEM, *HISTORY[4:], *new])
    found = fit(METER, [SYSTEM], HISTORY, new, last_turn + slack)
    assert found is not None
    assert found.keep_from in (4, 0)  # never mid-turn: a tool result keeps its call
    assert found.tokens <= last_turn + slack
    assert found.keep_from == (0 if METER.total([SYSTEM, *HISTORY, *new]) <= last_turn + slack else 4)


def test_tool_results_continuing_the_last_turn_keep_it() -> None:
    history = [*HISTORY, msg(ROLE.ROLE_USER, "third"), msg(ROLE.ROLE_ASSISTANT, call="c3")]
    new = [msg(ROLE.ROLE_TOOL, result="c3")]
    need = METER.total([SYSTEM, *history[8:], *new])
    found = fit(METER, [SYSTEM], history, new, need)
    assert found is not None
    assert found.keep_from == 8
    assert fit(METER, [SYSTEM], history, new, need - 1) is None


def test_fit_refuses_when_the_pinned_messages_do_not_fit() -> None:
    new = [msg(ROLE.ROLE_USER, "word " * 200)]
    assert fit(METER, [SYSTEM], HISTORY, new, METER.total([SYSTEM, *new]) - 1) is None
    assert fit(METER, [SYSTEM], [], new, METER.total([SYSTEM, *new])) is not None


def test_tools_count_against_the_budget() -> None:
    tool = content_pb2.Tool(name="lookup", description="looks things up in a very large database")
    assert TokenMeter("gpt-4o", [tool]).fixed > METER.fixed


def test_summary_request_drops_the_oldest_lines_to_fit() -> None:
    previous = msg(ROLE.ROLE_SYSTEM, "earlier facts")
    roomy = summary_request("mock/summary", previous, HISTORY, Limits(4096, 100))
    assert roomy.model == "mock/summary"
    assert roomy.max_output_tokens == 100
    assert plain(roomy.messages[0]) == SUMMARY_INSTRUCTIONS
    body = plain(roomy.messages[1])
    assert body.startswith("earlier summary: earlier facts\nuser: look it up please")
    assert "[called lookup({})]" in body
    assert "[tool result: 42]" in body
    budget = METER.total(list(roomy.messages)) - 15
    tight = summary_request("mock/summary", previous, HISTORY, Limits(budget + 10, 10))
    assert METER.total(list(tight.messages)) <= budget
    assert plain(tight.messages[1]).endswith("assistant: also 42")
    assert "earlier summary" not in plain(tight.messages[1])
    with pytest.raises(GatewayError) as info:
        summary_request("mock/summary", None, HISTORY, Limits(20, 10))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.reason == Reason.CONTEXT_LENGTH_EXCEEDED


def plain(message: content_pb2.Message) -> str:
    return "".join(p.text for p in message.parts)


def test_limits_come_from_the_catalog() -> None:
    mock = MockProvider("mock", ProviderSettings(kind="mock"))
    assert limits_for(Target(mock, "echo"), None, 1000, 1024) == Limits(8192, 1024)
    assert limits_for(Target(mock, "echo"), None, 1000, 9000) == Limits(8192, 4096)  # model's output cap
    assert limits_for(Target(mock, "echo"), 77, 1000, 1024) == Limits(8192, 77)
    assert limits_for(Target(mock, "not-in-table"), None, 1000, 100) == Limits(1000, 100)
    assert Limits(1000, 100).input_budget == 900


def test_reply_builder_accumulates_a_streamed_reply() -> None:
    builder = ReplyBuilder()
    builder.add(chat_pb2.StreamCompleteResponse(route={"provider": "p", "model": "m"}))
    assert not builder.has_content
    for event in (
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(reasoning="think")),
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(reasoning_signature=b"sig")),
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text="Hel")),
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text="lo")),
        chat_pb2.StreamCompleteResponse(tool_call_delta=chat_pb2.ToolCallDelta(index=0, name="f")),
        chat_pb2.StreamCompleteResponse(
            tool_call=content_pb2.ToolCall(id="c", name="f", arguments_json="{}")
        ),
    ):
        builder.add(event)
    assert builder.has_content
    assert not builder.finished
    message = builder.message()
    assert message.role == ROLE.ROLE_ASSISTANT
    assert [p.WhichOneof("kind") for p in message.parts] == ["reasoning", "text", "tool_call"]
    assert message.parts[0].reasoning.text == "think"
    assert message.parts[0].reasoning.signature == b"sig"
    assert message.parts[1].text == "Hello"
    assert message.parts[2].tool_call.id == "c"
    builder.add(chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish()))
    assert builder.finished


async def test_a_servicer_without_storage_refuses_conversations() -> None:
    servicer = ChatServicer(None, None)  # type: ignore[arg-type]
    request = chat_pb2.CompleteRequest(conversation_id="conv_x")
    with pytest.raises(GatewayError) as info:
        await servicer.Complete(request, _Ctx())  # type: ignore[arg-type]
    assert info.value.code == Code.UNIMPLEMENTED


class _Ctx:
    def time_remaining(self) -> float | None:
        return None
