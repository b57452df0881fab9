"""The Venice spec checks themselves, and the property tests that lean on them.

Canaries (provider-specs/README section 5.1): a validator that silently accepts everything would make
every "no validation errors" assertion meaningless, so invalid bodies must be caught, including the
ones the unrepaired validation file let through (see tests/providers/venice_spec.py).

Properties: every valid homa request translates to a body Venice's spec accepts, and every invalid
one is INVALID_ARGUMENT before any HTTP request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext
from homa_server.providers.venice import VeniceProvider
from homa_server.providers.venice.chat_request import build_venice_body
from tests.providers.fakes.venice_upstream import (
    VENICE_TEST_KEY,
    chunk,
    completion,
    json_reply,
    model_list,
    sse_reply,
    venice_settings,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401
from tests.providers.venice_spec import validate_chat_body, validate_venice_request, validate_venice_schema
from tests.strategies import invalid_chat_requests, valid_chat_requests

AUTH = {"Authorization": f"Bearer {VENICE_TEST_KEY}"}
CHAT_PATH = "/api/v1/chat/completions"
VALID_CHAT: dict[str, Any] = {"model": "zai-org-glm-5-1", "messages": [{"role": "user", "content": "Hi"}]}


# ---- canaries ------------------------------------------------------------------------------------


def test_valid_chat_request_passes():
    assert validate_chat_body(VALID_CHAT) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": [{"role": "wizard", "content": "Hi"}]},
        {"messages": "hi"},  # the raw spec accepted this under Prism
        {"messages": []},
        {"temperature": "hot"},
        {"temperature": 2.5},
        {"seed": 0},  # exclusiveMinimum: repaired from 3.0's boolean form
        {"stop": 5},  # `nullable` branch without a type: repaired to admit only null
        {"stop": ["a", "b", "c", "d", "e"]},
        {"venice_parameters": {"enable_web_search": True}},
        {"venice_parameters": {"enable_web_search": "always"}},
        {"web_search": True},  # additionalProperties: false
        {"messages": [{"role": "tool", "content": "x"}]},  # no tool_call_id
        {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},  # minLength 1
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]},
    ],
    ids=[
        "bad-role", "messages-string", "empty-messages", "temperature-type", "temperature-range",
        "seed-zero", "stop-number", "five-stops", "web-search-bool", "web-search-value", "unknown-field",
        "tool-without-id", "empty-text-part", "file-id", "image-in-system",
    ],
)  # fmt: skip
def test_invalid_chat_requests_are_caught(changes):
    assert validate_chat_body({**VALID_CHAT, **changes}) != []


def test_documented_web_search_values_pass():
    for mode in ("auto", "on", "off"):
        assert validate_chat_body({**VALID_CHAT, "venice_parameters": {"enable_web_search": mode}}) == []


def test_missing_auth_is_caught():
    assert validate_venice_request("POST", CHAT_PATH, orjson.dumps(VALID_CHAT), {}) != []


def test_model_listing_query_is_checked():
    assert validate_venice_request("GET", "/api/v1/models", None, AUTH, query={"type": "text"}) == []
    assert validate_venice_request("GET", "/api/v1/models", None, AUTH, query={"type": "bogus"}) != []


def test_reply_schemas_catch_drift():
    assert validate_venice_schema("ChatCompletion", completion()) == []
    broken = completion()
    del broken["usage"]
    assert validate_venice_schema("ChatCompletion", broken) != []
    assert validate_venice_schema("ChatCompletionChunk", chunk({"content": "x"})) == []
    assert validate_venice_schema("ChatCompletionChunk", chunk({"content": 5})) != []
    assert (
        validate_venice_schema("ChatCompletionChunk", {**chunk({"content": "x"}), "system_fingerprint": "fp"})
        != []
    )
    assert validate_venice_schema("ChatCompletionChunk", chunk(usage={"prompt_tokens": 1})) != []
    assert validate_venice_schema("ModelList", model_list(["a"])) == []
    assert (
        validate_venice_schema("ModelList", {"object": "list", "data": [{"id": "a"}], "type": "text"}) != []
    )
    assert validate_venice_schema("StandardError", {"error": "x"}) == []
    assert validate_venice_schema("StandardError", {"error": {"message": "x"}}) != []
    assert validate_venice_schema("PayloadTooLargeError", {"error": "x"}) != []


async def test_fake_rejects_an_off_spec_body_like_venice(venice_fake):
    bad = {**VALID_CHAT, "messages": [{"role": "wizard", "content": "Hi"}]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{venice_fake.base_url}/chat/completions", json=bad, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid request parameters"
    assert response.json()["issues"]
    assert len(venice_fake.validation_errors) == 1
    venice_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_answers_401_without_a_key(venice_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{venice_fake.base_url}/chat/completions", json=VALID_CHAT)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication failed"}
    venice_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(venice_fake):
    broken = chunk({"content": "x"})
    broken["object"] = "chat.completion"
    venice_fake.enqueue(sse_reply([broken]), json_reply({"id": "x"}))
    async with httpx.AsyncClient() as client:
        for stream in (True, False):
            url = f"{venice_fake.base_url}/chat/completions"
            await client.post(url, json={**VALID_CHAT, "stream": stream}, headers=AUTH)
    assert len(venice_fake.response_errors) >= 2
    venice_fake.response_errors.clear()


async def test_fake_sends_venice_rate_limit_headers(venice_fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{venice_fake.base_url}/chat/completions", json=VALID_CHAT, headers=AUTH
        )
    for name in ("requests", "tokens"):
        for kind in ("limit", "remaining", "reset"):
            assert f"x-ratelimit-{kind}-{name}" in response.headers
    assert int(response.headers["x-ratelimit-reset-requests"]) > 1_700_000_000  # a Unix timestamp
    assert int(response.headers["x-ratelimit-reset-tokens"]) <= 60  # seconds


# ---- properties ----------------------------------------------------------------------------------

_finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def venice_requests(draw: st.DrawFn) -> chat_pb2.CompleteRequest:
    """A valid homa request plus Venice's own options and sampling fields, in their spec ranges."""
    request = draw(valid_chat_requests("venice/zai-org-glm-5-1"))
    venice = request.provider_options.venice
    if draw(st.booleans()):
        venice.enable_web_search = draw(st.sampled_from(["auto", "on", "off"]))
    if draw(st.booleans()):
        venice.character_slug = draw(st.sampled_from(["alan-watts", "venice"]))
    for name in (
        "include_venice_system_prompt",
        "strip_thinking_response",
        "disable_thinking",
        "enable_web_citations",
        "include_search_results_in_stream",
        "enable_web_scraping",
    ):
        if draw(st.booleans()):
            setattr(venice, name, draw(st.booleans()))
    if draw(st.booleans()):
        venice.min_p = draw(st.floats(0.0, 1.0, **_finite))
    if draw(st.booleans()):
        venice.repetition_penalty = draw(st.floats(0.0, 2.0, **_finite))
    if draw(st.booleans()):
        venice.min_temp = draw(st.floats(0.0, 1.0, **_finite))
        venice.max_temp = draw(st.floats(1.0, 2.0, **_finite))
    if draw(st.booleans()):
        request.top_k = draw(st.integers(1, 500))
    if draw(st.booleans()):
        request.seed = draw(st.integers(1, 2**31))
    if draw(st.booleans()):
        request.presence_penalty = draw(st.floats(-2.0, 2.0, **_finite))
    if draw(st.booleans()):
        request.reasoning.effort = draw(st.sampled_from([1, 2, 3, 4]))  # type: ignore[arg-type]
    return request


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venice_requests(), st.booleans())
def test_every_valid_request_translates_to_a_spec_valid_body(request, stream):
    body = build_venice_body(request, "zai-org-glm-5-1", stream=stream, defaults={}).body
    assert validate_chat_body(body) == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_chat_requests("venice/zai-org-glm-5-1"), st.booleans())
def test_every_invalid_request_fails_before_any_upstream_call(request, stream):
    sent: list[httpx.Request] = []

    def handler(upstream: httpx.Request) -> httpx.Response:
        sent.append(upstream)
        return httpx.Response(200, json=completion())

    async def call() -> None:
        provider = VeniceProvider(
            "venice", venice_settings("https://api.venice.ai/api/v1"), transport=httpx.MockTransport(handler)
        )
        try:
            ctx = CallContext(model="zai-org-glm-5-1")
            if stream:
                async for _ in provider.stream_chat(request, ctx):
                    pass
            else:
                await provider.complete_chat(request, ctx)
        finally:
            await provider.aclose()

    with pytest.raises(GatewayError) as caught:
        asyncio.run(call())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert sent == []
