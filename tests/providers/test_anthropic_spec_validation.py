"""The spec checks themselves, and the property test tying the adapter to the spec.

Canary tests (provider-specs/README section 5.1): a validator that silently accepts everything
would make every "no validation errors" assertion meaningless, so invalid bodies must be caught.

Property test: every valid homa request (tests.strategies) translates into a body the official
spec accepts; every invalid one is INVALID_ARGUMENT before anything is sent.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from homa_server.errors import Code, GatewayError
from homa_server.providers.anthropic import AnthropicProvider
from homa_server.providers.anthropic.messages_request import build_messages_body
from homa_server.providers.anthropic.options import AnthropicOptions
from homa_server.providers.base import CallContext
from tests.providers.anthropic_spec import (
    EXAMPLES,
    validate_anthropic_request,
    validate_anthropic_schema,
    validate_messages_body,
    validate_stream_event,
)
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import (
    ANTHROPIC_TEST_KEY,
    anthropic_settings,
    error_body,
    event,
    message,
    sse_reply,
)
from tests.strategies import invalid_chat_requests, valid_chat_requests

anthropic_upstream, anthropic_fake = fx.anthropic_upstream, fx.anthropic_fake

HEADERS = {"x-api-key": ANTHROPIC_TEST_KEY, "anthropic-version": "2023-06-01"}
VALID = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
OPTIONS = AnthropicOptions()


def test_valid_request_passes():
    assert validate_messages_body(VALID) == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]},  # no max_tokens
        {**VALID, "messages": [{"role": "wizard", "content": "Hi"}]},
        {**VALID, "temperature": 1.5},
        {**VALID, "temperature": "hot"},
        {**VALID, "seed": 1},
        {**VALID, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        {
            **VALID,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="},
                        }
                    ],
                }
            ],
        },
        {
            **VALID,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "call:1", "name": "f", "input": {}}],
                }
            ],
        },
        {
            **VALID,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}],
                }
            ],
        },
        {**VALID, "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]},
        {**VALID, "thinking": {"type": "enabled", "budget_tokens": 512}},
        {**VALID, "tools": [{"name": "bad name", "input_schema": {"type": "object"}}]},
        {**VALID, "tools": [{"name": "f", "input_schema": {"type": "array"}}]},
        {**VALID, "tool_choice": {"type": "none", "disable_parallel_tool_use": True}},
        {**VALID, "output_config": {"format": {"type": "json_object"}}},
        {**VALID, "system": [{"type": "image"}]},
    ],
    ids=[
        "no-max-tokens",
        "bad-role",
        "temperature-above-1",
        "temperature-string",
        "seed",
        "empty-text",
        "bmp-image",
        "bad-tool-id",
        "string-tool-input",
        "unsigned-thinking",
        "small-budget",
        "bad-tool-name",
        "array-schema",
        "none-with-parallel-flag",
        "json-object-format",
        "image-in-system",
    ],
)
def test_invalid_requests_are_caught(body):
    assert validate_messages_body(body) != []


def test_models_query_is_checked():
    assert validate_anthropic_request("GET", "/v1/models", None, HEADERS, query={"limit": "1000"}) == []
    assert validate_anthropic_request("GET", "/v1/models", None, HEADERS, query={"limit": "0"}) != []


def test_count_tokens_body_is_checked():
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    assert validate_anthropic_request("POST", "/v1/messages/count_tokens", orjson.dumps(body), HEADERS) == []
    bad = {**body, "max_tokens": 5}  # count_tokens takes no max_tokens
    assert validate_anthropic_request("POST", "/v1/messages/count_tokens", orjson.dumps(bad), HEADERS) != []


async def test_fake_rejects_an_off_spec_body_and_records_it(anthropic_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{anthropic_fake.base_url}/v1/messages", json={**VALID, "seed": 1}, headers=HEADERS
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["type"] == "error"
    assert len(anthropic_fake.validation_errors) == 1
    assert "InvalidRequestBody" in anthropic_fake.validation_errors[0]
    anthropic_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


@pytest.mark.parametrize(
    ("headers", "status", "text"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
        ({"x-api-key": "sk-ant-other", "anthropic-version": "2023-06-01"}, 401, "invalid x-api-key"),
        ({"x-api-key": ANTHROPIC_TEST_KEY}, 400, "anthropic-version: header is required"),
    ],
)
async def test_fake_checks_auth_headers_like_anthropic(anthropic_fake, headers, status, text):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{anthropic_fake.base_url}/v1/messages", json=VALID, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == text
    assert response.headers["request-id"].startswith("req_")
    assert anthropic_fake.validation_errors != []
    anthropic_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(anthropic_fake):
    broken = message()
    del broken["stop_details"]  # required (nullable) in the spec
    anthropic_fake.enqueue(fx.json_reply(broken))
    async with httpx.AsyncClient() as client:
        await client.post(f"{anthropic_fake.base_url}/v1/messages", json=VALID, headers=HEADERS)
    assert any("stop_details" in problem for problem in anthropic_fake.response_errors)
    anthropic_fake.response_errors.clear()


async def test_fake_flags_off_spec_stream_events(anthropic_fake):
    anthropic_fake.enqueue(
        sse_reply([{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}])
    )
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{anthropic_fake.base_url}/v1/messages", json={**VALID, "stream": True}, headers=HEADERS
        )
    assert anthropic_fake.response_errors != []
    anthropic_fake.response_errors.clear()


async def test_fake_serves_unknown_paths_like_anthropic(anthropic_fake):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{anthropic_fake.base_url}/v1/nope", headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_fake_stream_framing(anthropic_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{anthropic_fake.base_url}/v1/messages", json={**VALID, "stream": True}, headers=HEADERS
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.content.split(b"\n\n")
    assert frames[0].startswith(b"event: message_start\ndata: {")
    assert frames[-2] == b'event: message_stop\ndata: {"type":"message_stop"}'
    assert b"event: ping" in response.content


def test_example_files_match_the_spec():
    for frame in (EXAMPLES / "messages-stream-tool-use.sse").read_bytes().split(b"\n\n"):
        if frame.strip():
            name, data = frame.split(b"\n")
            assert (
                validate_stream_event(name[len("event: ") :].decode(), orjson.loads(data[len("data: ") :]))
                == []
            )
    error = (EXAMPLES / "stream-error-event.sse").read_bytes().strip().split(b"\n")
    assert validate_stream_event("error", orjson.loads(error[1][len("data: ") :])) == []
    assert (
        validate_anthropic_schema(
            "ErrorResponse", orjson.loads((EXAMPLES / "error-529-overloaded.json").read_bytes())
        )
        == []
    )


def test_builders_match_the_spec():
    assert validate_anthropic_schema("Message", message()) == []
    assert validate_anthropic_schema("ErrorResponse", error_body("api_error", "x")) == []
    assert validate_stream_event("ping", {"type": "ping"}) == []
    assert event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


# ---- properties ----------------------------------------------------------------------------


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat=valid_chat_requests(model="anthropic/claude-sonnet-4-5"))
def test_every_valid_request_translates_to_a_spec_valid_body(chat):
    for stream in (False, True):
        body = build_messages_body(chat, "claude-sonnet-4-5", OPTIONS, stream=stream)
        assert validate_messages_body(body) == []


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat=invalid_chat_requests(model="anthropic/claude-sonnet-4-5"))
def test_every_invalid_request_is_rejected_before_any_call(anthropic_upstream, chat):
    anthropic_upstream.reset()

    async def attempt() -> None:
        provider = AnthropicProvider("anthropic", anthropic_settings(anthropic_upstream.base_url))
        try:
            await provider.complete_chat(chat, CallContext(model="claude-sonnet-4-5"))
        finally:
            await provider.aclose()

    with pytest.raises(GatewayError) as caught:
        asyncio.run(attempt())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert anthropic_upstream.requests == []
