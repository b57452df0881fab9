"""The spec checks themselves, and the property that every homa request translates to a valid body.

Canary tests in the sense of provider-specs/README section 5.1: a validator that silently accepts
everything would make every "no validation errors" assertion meaningless.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.ollama.chat_request import RequestDefaults, build_chat_body
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    EXAMPLES,
    FakeOllama,
    chat_response,
    error_reply,
    final_line,
    ndjson_reply,
    ollama_fake_fixture,
    ollama_upstream_fixture,
    stream_line,
)
from tests.providers.ollama_spec import validate_chat_body, validate_ollama_request, validate_ollama_schema
from tests.strategies import invalid_chat_requests, valid_chat_requests

VALID_CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}
DEFAULTS = RequestDefaults(keep_alive="5m", options={"num_ctx": 8192})


def test_valid_chat_request_passes():
    assert validate_chat_body(VALID_CHAT) == []


def test_api_md_fields_pass():
    body = {
        "model": "llama3.2",
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "thinking": "use the tool",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}}],
            },
            {"role": "tool", "content": "11 degrees celsius", "tool_name": "get_weather"},
        ],
        "options": {"num_keep": 5, "repeat_penalty": 1.2, "numa": False},
        "think": "high",
        "keep_alive": 0,
    }
    assert validate_chat_body(body) == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "llama3.2", "messages": [{"role": "wizard", "content": "Hi"}]},
        {"model": "llama3.2", "messages": [{"role": "user"}]},
        {"model": "llama3.2"},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {**VALID_CHAT, "format": "xml"},
        {**VALID_CHAT, "think": "extreme"},
        {**VALID_CHAT, "options": {"temperature": "hot"}},
        {**VALID_CHAT, "stream": "yes"},
        {**VALID_CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**VALID_CHAT, "optoins": {"temperature": 0.1}},
        {**VALID_CHAT, "tool_choice": "required"},
        {**VALID_CHAT, "options": {"max_tokens": 10}},
        {"model": "llama3.2", "messages": [{"role": "tool", "content": "x", "tool_call_id": "call_0"}]},
        {
            "model": "llama3.2",
            "messages": [
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}, "id": "c"}]}
            ],
        },
    ],
    ids=[
        "bad-role",
        "no-content",
        "no-messages",
        "no-model",
        "bad-format",
        "bad-think",
        "bad-temperature",
        "bad-stream",
        "tool-without-parameters",
        "typo-top-level",
        "tool-choice",
        "openai-option",
        "tool-call-id",
        "id-on-call",
    ],
)
def test_invalid_chat_requests_are_caught(body):
    assert validate_chat_body(body) != []


def test_other_endpoints_are_validated_too():
    assert validate_ollama_request("GET", "/api/tags", None, {}) == []
    assert validate_ollama_request("POST", "/api/embed", orjson.dumps({"model": "x"}), {}) != []


def test_example_files_match_the_spec():
    for name in ("chat-stream-tool-call.ndjson", "chat-stream-midstream-error.ndjson"):
        for line in (EXAMPLES / name).read_bytes().splitlines():
            event = orjson.loads(line)
            schema = "ErrorResponse" if "error" in event else "ChatStreamEvent"
            assert validate_ollama_schema(schema, event) == []


def test_fake_builders_match_the_spec():
    assert (
        validate_ollama_schema("ChatResponse", chat_response(thinking="t", tool_calls=[("f", {"a": 1})]))
        == []
    )
    assert validate_ollama_schema("ChatStreamEvent", stream_line("x", thinking="t")) == []
    assert validate_ollama_schema("ChatResponse", final_line()) == []
    assert validate_ollama_schema("ErrorResponse", orjson.loads(error_reply(400, "x").body)) == []


def test_schema_check_rejects_bad_replies():
    assert validate_ollama_schema("ChatResponse", {**final_line(), "eval_count": "many"}) != []
    assert validate_ollama_schema("ChatResponse", {**final_line(), "created_at": "yesterday"}) != []
    assert validate_ollama_schema("ErrorResponse", {"error": {"message": "x"}}) != []


async def test_fake_rejects_an_off_spec_body_and_records_it(ollama_fake: FakeOllama):
    bad = {"model": "llama3.2", "messages": [{"role": "wizard", "content": "Hi"}], "stream": False}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ollama_fake.base_url}/api/chat", json=bad)
    assert response.status_code == 400
    assert "error" in response.json()
    assert len(ollama_fake.validation_errors) == 1
    assert "InvalidRequestBody" in ollama_fake.validation_errors[0]
    ollama_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_rejects_undocumented_fields(ollama_fake: FakeOllama):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ollama_fake.base_url}/api/chat", json={**VALID_CHAT, "optoins": {}})
    assert response.status_code == 400
    assert "optoins" in ollama_fake.validation_errors[0]
    ollama_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(ollama_fake: FakeOllama):
    ollama_fake.enqueue(ndjson_reply([{**stream_line("x"), "done": "no"}]))
    async with httpx.AsyncClient() as client:
        await client.post(f"{ollama_fake.base_url}/api/chat", json=VALID_CHAT)
    assert any("done" in problem for problem in ollama_fake.response_errors)
    ollama_fake.response_errors.clear()


async def test_fake_demands_the_key_when_told(ollama_fake: FakeOllama):
    ollama_fake.require_key = "k"
    async with httpx.AsyncClient() as client:
        missing = await client.post(f"{ollama_fake.base_url}/api/chat", json=VALID_CHAT)
        right = await client.get(f"{ollama_fake.base_url}/api/tags", headers={"Authorization": "Bearer k"})
    assert (missing.status_code, missing.json()) == (401, {"error": "unauthorized"})
    assert right.status_code == 200


async def test_fake_serves_unknown_paths_like_ollama(ollama_fake: FakeOllama):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ollama_fake.base_url}/v1/chat/completions", json=VALID_CHAT)
    assert response.status_code == 404
    assert response.text == "404 page not found"
    assert response.headers["content-type"] == "text/plain"


async def test_fake_streams_ndjson_by_default(ollama_fake: FakeOllama):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ollama_fake.base_url}/api/chat", json=VALID_CHAT)
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.split(b"\n")
    assert lines[-1] == b""  # every line, the last included, ends with a newline
    assert orjson.loads(lines[-2])["done"] is True


# ---- properties --------------------------------------------------------------------------------

_FORCED = (content_pb2.ToolChoice.MODE_REQUIRED, content_pb2.ToolChoice.MODE_NAMED)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(valid_chat_requests(model="ollama/llama3.2"), st.booleans())
def test_every_valid_request_translates_to_a_spec_valid_body(request: chat_pb2.CompleteRequest, stream: bool):
    if request.tool_choice.mode in _FORCED:
        # The one thing a valid homa request may ask that Ollama cannot express: a forced tool call.
        with pytest.raises(GatewayError) as caught:
            build_chat_body(request, "llama3.2", DEFAULTS, stream=stream)
        assert caught.value.code == Code.INVALID_ARGUMENT
        assert [v.field for v in caught.value.field_violations] == ["tool_choice"]
        return
    body = build_chat_body(request, "llama3.2", DEFAULTS, stream=stream)
    assert validate_chat_body(body) == []
    assert body["stream"] is stream
    assert len(body["messages"]) == sum(
        len(m.parts) if m.role == content_pb2.ROLE_TOOL else 1 for m in request.messages
    )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(invalid_chat_requests(model="ollama/llama3.2"))
def test_every_invalid_request_is_refused_before_any_upstream_call(request: chat_pb2.CompleteRequest):
    # build_chat_body is the provider's first step; no HTTP happens unless it returns.
    with pytest.raises(GatewayError) as caught:
        build_chat_body(request, "llama3.2", DEFAULTS, stream=True)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.field_violations
