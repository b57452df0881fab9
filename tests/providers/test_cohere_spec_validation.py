"""The spec checks themselves: they must reject invalid traffic, or the other tests prove nothing.

Canary tests in the sense of provider-specs/README section 5.1, plus the repairs `cohere_spec`
makes (discriminators, `OFF` enums, closed request objects) and the fake's own checks.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.providers.cohere_spec import (
    EVENT_SCHEMAS,
    EXAMPLES,
    validate_cohere_error,
    validate_cohere_event,
    validate_cohere_request,
    validate_cohere_schema,
)
from tests.providers.fakes.cohere_upstream import (
    COHERE_TEST_KEY,
    chat_response,
    citation_start,
    content_delta,
    content_start,
    error_reply,
    message_end,
    message_start,
    sse_reply,
    tool_call_delta,
    tool_call_end,
    tool_call_start,
    tool_plan_delta,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

AUTH = {"Authorization": f"Bearer {COHERE_TEST_KEY}"}
USER = {"role": "user", "content": "Hi"}
VALID_CHAT = {"model": "command-a-03-2025", "messages": [USER]}


def check(body: dict[str, object], headers: dict[str, str] = AUTH) -> list[str]:
    return validate_cohere_request("POST", "/v2/chat", orjson.dumps(body), headers)


def test_valid_chat_request_passes():
    assert check(VALID_CHAT) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "json_object", "json_schema": {"type": "object"}}},  # ambiguous oneOf
        {"response_format": {"type": "text"}},
        {"safety_mode": "OFF"},  # YAML 1.1 had turned OFF into false
        {"citation_options": {"mode": "OFF"}},
        {"documents": [{"id": "doc_0", "data": {"text": "t", "anything": 1}}, "a plain string document"]},
        {"thinking": {"type": "enabled", "token_budget": 100}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"k": 500, "p": 0.99, "temperature": 1, "stop_sequences": ["x"], "seed": 0, "max_tokens": 1},
    ],
    ids=[
        "json-schema",
        "text-format",
        "safety-off",
        "citations-off",
        "documents",
        "thinking",
        "tools",
        "sampling",
    ],
)
def test_valid_variants_pass(extra):
    assert check({**VALID_CHAT, **extra}) == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "wizard", "content": "Hi"}]},
        {"model": "m", "messages": [USER], "temperature": "hot"},
        {"model": "m", "messages": [USER], "temperature": 1.5},
        {"model": "m", "messages": [USER], "p": 1.0},
        {"model": "m", "messages": [USER], "k": 501},
        {"model": "m"},
        {"messages": [USER]},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},  # no tool_call_id
        {"model": "m", "messages": [USER], "top_p": 0.5},  # OpenAI's name: closed objects catch it
        {"model": "m", "messages": [{**USER, "name": "alice"}]},
        {"model": "m", "messages": [USER], "tool_choice": "AUTO"},
        {"model": "m", "messages": [USER], "response_format": {"type": "json_schema"}},
        {"model": "m", "messages": [USER], "safety_mode": False},
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "document", "document": {"data": {}}}]}],
        },
        {"model": "m", "messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}]},
        {"model": "m", "messages": [USER], "thinking": {"type": "enabled", "token_budget": 0}},
    ],
    ids=[
        "bad-role",
        "bad-temperature-type",
        "temperature-above-one",
        "p-of-one",
        "k-above-500",
        "no-messages",
        "no-model",
        "tool-without-id",
        "unknown-field",
        "message-name",
        "tool-choice-auto",
        "format-json-schema-type",
        "safety-false",
        "document-in-user-content",
        "tool-without-parameters",
        "zero-thinking-budget",
    ],
)
def test_invalid_chat_requests_are_caught(body):
    assert check(body) != []


def test_missing_auth_is_caught():
    assert any("Security" in p for p in check(VALID_CHAT, headers={}))


def test_models_query_is_checked():
    ok = validate_cohere_request(
        "GET", "/v1/models", None, AUTH, query={"page_size": "5", "endpoint": "chat"}
    )
    bad = validate_cohere_request("GET", "/v1/models", None, AUTH, query={"endpoint": "chatty"})
    assert ok == []
    assert bad != []


def test_every_stream_event_type_has_a_schema():
    assert set(EVENT_SCHEMAS) >= {
        "message-start",
        "content-start",
        "content-delta",
        "content-end",
        "tool-plan-delta",
        "tool-call-start",
        "tool-call-delta",
        "tool-call-end",
        "citation-start",
        "citation-end",
        "message-end",
    }


def test_event_validation_catches_drift():
    assert validate_cohere_event(message_end()) == []
    assert validate_cohere_event(message_end("DONE")) != []
    assert validate_cohere_event({"type": "content-delta", "index": "zero"}) != []
    assert validate_cohere_event({"type": "nonsense"}) != []
    citation = {"text": "x", "sources": [{"type": "webpage", "id": "1"}]}
    assert validate_cohere_event(citation_start(0, citation)) != []


def test_builders_match_the_spec():
    events = [
        message_start(),
        content_start(),
        content_start(1, "thinking"),
        content_delta("a"),
        content_delta("b", 1, "thinking"),
        tool_plan_delta("plan"),
        tool_call_start(0, "c1", "f"),
        tool_call_delta(0, "{}"),
        tool_call_end(0),
        citation_start(0, {"start": 0, "end": 1, "text": "a", "sources": [{"type": "tool", "id": "c1:0"}]}),
        message_end("TOOL_CALL", error="x"),
    ]
    assert [problem for event in events for problem in validate_cohere_event(event)] == []
    assert validate_cohere_schema("ChatResponseV2", chat_response(thinking="t", tool_plan="p")) == []
    assert validate_cohere_error("/v2/chat", "post", 400, orjson.loads(error_reply(400, "x").body)) == []


def test_example_files_match_the_spec():
    for name in ("chat-v2-stream-text.sse", "chat-v2-stream-tool-call.sse"):
        for line in (EXAMPLES / name).read_bytes().splitlines():
            if line.startswith(b"data: {"):
                assert validate_cohere_event(orjson.loads(line[6:])) == []
    body = orjson.loads((EXAMPLES / "error-429.json").read_bytes())
    assert validate_cohere_error("/v2/chat", "post", 429, body) == []


async def test_fake_rejects_an_off_spec_body_and_records_it(cohere_fake):
    bad = {"model": "command-a-03-2025", "messages": [USER], "top_p": 0.5}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{cohere_fake.base_url}/v2/chat", json=bad, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["message"].startswith("invalid request")
    assert len(cohere_fake.validation_errors) == 1
    assert "top_p" in cohere_fake.validation_errors[0]
    cohere_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_answers_401_without_a_key(cohere_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{cohere_fake.base_url}/v2/chat", json=VALID_CHAT)
    assert response.status_code == 401
    assert response.json()["message"] == "no api key supplied"
    assert cohere_fake.validation_errors != []
    cohere_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(cohere_fake):
    broken = message_end()
    broken["delta"]["finish_reason"] = "FINISHED"
    mislabelled = b'event: content-end\ndata: {"type":"content-start","index":0}\n\n'
    cohere_fake.enqueue(sse_reply([message_start(), mislabelled, broken]))
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{cohere_fake.base_url}/v2/chat", json={**VALID_CHAT, "stream": True}, headers=AUTH
        )
    assert any("FINISHED" in problem for problem in cohere_fake.response_errors)
    assert any("event line" in problem for problem in cohere_fake.response_errors)
    cohere_fake.response_errors.clear()


async def test_fake_serves_unknown_paths_with_a_cohere_404(cohere_fake):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{cohere_fake.base_url}/v3/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["message"] == "404 page not found"
