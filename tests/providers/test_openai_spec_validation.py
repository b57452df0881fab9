"""The spec checks themselves: they must reject invalid traffic, or the other tests prove nothing.

Canary tests in the sense of provider-specs/README section 5.1: a validator that silently accepts
everything would make every "no validation errors" assertion meaningless.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.providers.fakes.openai_upstream import EXAMPLES, chunk, error_reply, sse_reply
from tests.providers.spec_validation import validate_openai_request, validate_openai_schema

AUTH = {"Authorization": "Bearer sk-test"}
VALID_CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_valid_chat_request_passes():
    assert validate_openai_request("POST", "/v1/chat/completions", orjson.dumps(VALID_CHAT), AUTH) == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "Hi"}]},
        {"model": "gpt-4o-mini", "temperature": "hot", "messages": [{"role": "user", "content": "Hi"}]},
        {"model": "gpt-4o-mini"},
        {"model": "gpt-4o-mini", "messages": []},
        {"model": "gpt-4o-mini", "messages": [{"role": "tool", "content": "x"}]},  # no tool_call_id
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi"}],
            "stop": ["a", "b", "c", "d", "e"],
        },
    ],
    ids=["bad-role", "bad-temperature", "no-messages", "empty-messages", "tool-without-id", "five-stops"],
)
def test_invalid_chat_requests_are_caught(body):
    assert validate_openai_request("POST", "/v1/chat/completions", orjson.dumps(body), AUTH) != []


def test_missing_auth_is_caught_unless_not_required():
    body = orjson.dumps(VALID_CHAT)
    assert validate_openai_request("POST", "/v1/chat/completions", body, {}) != []
    assert validate_openai_request("POST", "/v1/chat/completions", body, {}, require_auth=False) == []


def test_invalid_responses_input_is_caught():
    body = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_picture"}]}]}
    assert validate_openai_request("POST", "/v1/responses/input_tokens", orjson.dumps(body), AUTH) != []


async def test_fake_rejects_an_off_spec_body_and_records_it(openai_fake):
    bad = {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "Hi"}]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{openai_fake.base_url}/chat/completions", json=bad, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert len(openai_fake.validation_errors) == 1
    assert "InvalidRequestBody" in openai_fake.validation_errors[0]
    openai_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_answers_401_without_a_key(openai_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{openai_fake.base_url}/chat/completions", json=VALID_CHAT)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]
    assert openai_fake.validation_errors != []
    openai_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(openai_fake):
    broken = chunk({"content": "x"})
    broken["object"] = "chat.completion"  # wrong for a chunk
    openai_fake.enqueue(sse_reply([broken]))
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{openai_fake.base_url}/chat/completions", json={**VALID_CHAT, "stream": True}, headers=AUTH
        )
    assert any("object" in problem for problem in openai_fake.response_errors)
    openai_fake.response_errors.clear()


async def test_fake_serves_unknown_paths_like_openai(openai_fake):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{openai_fake.base_url}/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"


def test_example_files_match_the_spec():
    for name in ("chat-completions-stream-text.sse", "chat-completions-stream-tool-call.sse"):
        for line in (EXAMPLES / name).read_bytes().splitlines():
            if line.startswith(b"data: {"):
                assert (
                    validate_openai_schema("CreateChatCompletionStreamResponse", orjson.loads(line[6:])) == []
                )
    assert (
        validate_openai_schema("ErrorResponse", orjson.loads((EXAMPLES / "error-429.json").read_bytes()))
        == []
    )


def test_error_builder_matches_the_spec():
    assert validate_openai_schema("ErrorResponse", orjson.loads(error_reply(400, "x").body)) == []
