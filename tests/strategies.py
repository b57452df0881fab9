"""Hypothesis strategies for homa chat requests, shared by the per-vendor property tests.

`valid_chat_requests()` draws requests that pass homa's own validation and that every chat vendor
can express: alternating user/assistant turns (optionally a system message first), text and small
PNG image parts, tools with simple object schemas, assistant tool calls answered by tool results,
and sampling options inside every vendor's accepted ranges. Vendor tests translate each draw and
validate the vendor body against the official spec.

`invalid_chat_requests()` draws requests that break a homa rule (so they must fail with
INVALID_ARGUMENT before any upstream call).
"""

from __future__ import annotations

import base64
import string

import orjson
from hypothesis import strategies as st

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2

# A 1x1 transparent PNG: every vision API accepts it.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_words = st.text(alphabet=string.ascii_letters + string.digits + " .,?!'-éü", min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)
_names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20).filter(
    lambda s: s[0].isalpha()
)


@st.composite
def tools(draw: st.DrawFn) -> list[content_pb2.Tool]:
    """0-3 tools with unique names and simple object schemas."""
    names = draw(st.lists(_names, min_size=0, max_size=3, unique=True))
    result = []
    for name in names:
        tool = content_pb2.Tool(name=name, description=draw(_words))
        props = draw(st.lists(_names, min_size=1, max_size=3, unique=True))
        kinds = draw(
            st.lists(
                st.sampled_from(["string", "integer", "number", "boolean"]),
                min_size=len(props),
                max_size=len(props),
            )
        )
        tool.parameters.update(
            {
                "type": "object",
                "properties": {p: {"type": k} for p, k in zip(props, kinds, strict=True)},
                "required": props[:1],
            }
        )
        result.append(tool)
    return result


def _text(role: int, text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=role)  # type: ignore[arg-type]
    message.parts.add(text=text)
    return message


@st.composite
def valid_chat_requests(draw: st.DrawFn, model: str = "vendor/model") -> chat_pb2.CompleteRequest:
    """A valid CompleteRequest every chat vendor can express."""
    request = chat_pb2.CompleteRequest(model=model)
    request.tools.extend(draw(tools()))
    if draw(st.booleans()):
        request.messages.append(_text(content_pb2.ROLE_SYSTEM, draw(_words)))
    turns = draw(st.integers(min_value=1, max_value=3))
    for turn in range(turns):
        user = _text(content_pb2.ROLE_USER, draw(_words))
        if draw(st.integers(0, 4)) == 0:
            user.parts.add(inline_data=content_pb2.InlineData(mime_type="image/png", data=PNG_1X1))
        request.messages.append(user)
        last = turn == turns - 1
        if last:
            break
        if request.tools and draw(st.booleans()):
            tool = draw(st.sampled_from(list(request.tools)))
            call_id = f"call_{turn}"
            args = dict.fromkeys(list(tool.parameters["properties"].keys())[:1], "x")
            assistant = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
            assistant.parts.add(
                tool_call=content_pb2.ToolCall(
                    id=call_id, name=tool.name, arguments_json=orjson.dumps(args).decode()
                )
            )
            request.messages.append(assistant)
            result = content_pb2.Message(role=content_pb2.ROLE_TOOL)
            result.parts.add(
                tool_result=content_pb2.ToolResult(tool_call_id=call_id, name=tool.name, content=draw(_words))
            )
            request.messages.append(result)
            request.messages.append(_text(content_pb2.ROLE_ASSISTANT, draw(_words)))
        else:
            request.messages.append(_text(content_pb2.ROLE_ASSISTANT, draw(_words)))
    if draw(st.booleans()):
        request.temperature = draw(st.floats(min_value=0.0, max_value=1.0))
    if draw(st.booleans()):
        request.top_p = draw(st.floats(min_value=0.01, max_value=1.0))
    if draw(st.booleans()):
        request.max_output_tokens = draw(st.integers(min_value=1, max_value=4096))
    if draw(st.booleans()):
        request.stop.extend(draw(st.lists(_words, min_size=1, max_size=3)))
    if request.tools and draw(st.booleans()):
        mode = draw(
            st.sampled_from(
                [
                    content_pb2.ToolChoice.MODE_AUTO,
                    content_pb2.ToolChoice.MODE_REQUIRED,
                    content_pb2.ToolChoice.MODE_NAMED,
                ]
            )
        )
        request.tool_choice.mode = mode
        if mode == content_pb2.ToolChoice.MODE_NAMED:
            request.tool_choice.name = request.tools[0].name
    return request


@st.composite
def invalid_chat_requests(draw: st.DrawFn, model: str = "vendor/model") -> chat_pb2.CompleteRequest:
    """A request that breaks one homa rule."""
    request = draw(valid_chat_requests(model))
    breakage = draw(
        st.sampled_from(
            [
                "no_messages",
                "empty_message",
                "no_role",
                "bad_temperature",
                "bad_tool_name",
                "tool_result_in_user",
            ]
        )
    )
    if breakage == "no_messages":
        del request.messages[:]
    elif breakage == "empty_message":
        request.messages.add(role=content_pb2.ROLE_USER)
    elif breakage == "no_role":
        request.messages.add().parts.add(text="x")
    elif breakage == "bad_temperature":
        request.temperature = draw(st.floats(min_value=2.01, max_value=100.0))
    elif breakage == "bad_tool_name":
        request.tools.add(name="bad name!")
    else:
        request.messages.add(role=content_pb2.ROLE_USER).parts.add(
            tool_result=content_pb2.ToolResult(tool_call_id="x", content="y")
        )
    return request
