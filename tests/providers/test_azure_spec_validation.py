"""The Azure spec checks themselves: they must reject invalid traffic, or the other tests prove
nothing (canaries in the sense of provider-specs/README section 5.1), and the fake's replies must
match the spec."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from homa_server.providers.azure_openai.api_versions import PREVIEW_2025_04_01, STABLE_2024_10_21
from tests.providers.azure_spec import (
    PREVIEW_SPEC,
    STABLE_SPEC,
    declared_request_fields,
    validate_azure_request,
    validate_azure_schema,
)
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import (
    AZURE_KEY,
    chat_completion,
    chunk,
    content_filter_reply,
    error_reply,
    prompt_filter_chunk,
    rate_limited_reply,
    sse_reply,
    usage_chunk,
)

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake

GA = "2024-10-21"
PREVIEW = "2025-04-01-preview"
PATH = "/openai/deployments/gpt-4o/chat/completions"
AUTH = {"api-key": "k"}
VALID = {"messages": [{"role": "user", "content": "Hi"}]}


def problems(body: Any, api_version: str = GA, headers: dict[str, str] | None = None) -> list[str]:
    query = {"api-version": api_version} if api_version else {}
    return validate_azure_request(
        "POST", PATH, query, orjson.dumps(body), AUTH if headers is None else headers
    )


@pytest.mark.parametrize("api_version", [GA, PREVIEW])
def test_valid_chat_request_passes(api_version):
    assert problems(VALID, api_version) == []
    assert problems(VALID, api_version, {"Authorization": "Bearer eyJ.x.y"}) == []


@pytest.mark.parametrize(
    ("body", "api_version"),
    [
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, GA),
        ({**VALID, "temperature": "hot"}, GA),
        ({**VALID, "temperature": 3}, PREVIEW),
        ({}, GA),
        ({"messages": []}, GA),
        ({"messages": [{"role": "tool", "content": "x"}]}, GA),  # no tool_call_id
        ({**VALID, "stop": ["a", "b", "c", "d", "e"]}, GA),
        ({**VALID, "model": "gpt-4o"}, PREVIEW),  # Azure has no `model` field
        ({**VALID, "stream": True, "stream_options": {"include_usage": True}}, GA),
        ({**VALID, "reasoning_effort": "low"}, GA),
        ({**VALID, "reasoning_effort": "minimal"}, PREVIEW),
        ({"messages": [{"role": "developer", "content": "Be brief"}]}, GA),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            PREVIEW,
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, GA),
        ({**VALID, "tools": [{"type": "function", "function": {"name": "f", "bogus": 1}}]}, GA),
    ],
    ids=[
        "bad-role",
        "bad-temperature-type",
        "temperature-range",
        "no-messages",
        "empty-messages",
        "tool-without-id",
        "five-stops",
        "model-field",
        "stream-options-on-ga",
        "reasoning-effort-on-ga",
        "minimal-effort",
        "developer-on-ga",
        "file-part",
        "audio-on-ga",
        "undeclared-nested-field",
    ],
)
def test_invalid_chat_requests_are_caught(body, api_version):
    assert problems(body, api_version) != []


def test_missing_api_version_is_caught():
    assert any("api-version" in p for p in problems(VALID, api_version=""))


def test_missing_credentials_are_caught():
    assert any(p.startswith("SecurityValidationError") for p in problems(VALID, headers={}))


def test_other_paths_are_caught():
    found = validate_azure_request(
        "POST", "/openai/deployments/x/chat/completion", {"api-version": GA}, None, AUTH
    )
    assert found != []


@pytest.mark.parametrize(
    ("surface", "spec"), [(STABLE_2024_10_21, STABLE_SPEC), (PREVIEW_2025_04_01, PREVIEW_SPEC)]
)
def test_the_adapter_knows_exactly_the_declared_fields(surface, spec):
    assert surface.fields == declared_request_fields(spec)


def test_the_ga_json_schema_erratum_is_real():
    raw = orjson.loads(STABLE_SPEC.read_bytes())
    required = raw["components"]["schemas"]["ResponseFormatJsonSchema"]["properties"]["json_schema"][
        "required"
    ]
    assert "type" in required  # the reason azure_spec patches it (the preview spec requires [schema, name])
    preview = orjson.loads(PREVIEW_SPEC.read_bytes())
    assert preview["components"]["schemas"]["ResponseFormatJsonSchema"]["properties"]["json_schema"][
        "required"
    ] == [
        "schema",
        "name",
    ]


# ---- the fake's own replies ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", [STABLE_SPEC, PREVIEW_SPEC])
def test_reply_builders_match_the_spec(spec):
    assert validate_azure_schema(spec, "createChatCompletionResponse", chat_completion()) == []
    calls = chat_completion(None, tool_calls=[("c", "f", "{}")], finish_reason="tool_calls")
    assert validate_azure_schema(spec, "createChatCompletionResponse", calls) == []
    for event in (chunk({"content": "x"}), chunk({}, finish_reason="stop"), usage_chunk()):
        assert validate_azure_schema(spec, "createChatCompletionStreamResponse", event) == []
    for reply in (content_filter_reply(), rate_limited_reply(), error_reply(404, "DeploymentNotFound", "x")):
        assert validate_azure_schema(spec, "errorResponse", orjson.loads(reply.body)) == []
    assert (
        validate_azure_schema(spec, "promptFilterResults", prompt_filter_chunk()["prompt_filter_results"])
        == []
    )


def test_the_prompt_filter_chunk_is_a_documented_deviation():
    # Live Azure sends `"object": ""` in it, which the chunk schema's enum does not allow; the fake
    # checks such annotation chunks field by field instead (see the fake's docstring).
    found = validate_azure_schema(STABLE_SPEC, "createChatCompletionStreamResponse", prompt_filter_chunk())
    assert any("object" in p for p in found)


async def test_fake_rejects_an_off_spec_body_and_records_it(azure_fake):
    bad = {"messages": [{"role": "wizard", "content": "Hi"}]}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{azure_fake.base_url}/deployments/gpt-4o/chat/completions",
            params={"api-version": GA},
            json=bad,
            headers={"api-key": AZURE_KEY},
        )
    assert response.status_code == 400
    assert response.headers["apim-request-id"]
    assert len(azure_fake.validation_errors) == 1
    assert "InvalidRequestBody" in azure_fake.validation_errors[0]
    azure_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_answers_401_without_credentials_and_404_without_api_version(azure_fake):
    async with httpx.AsyncClient() as client:
        url = f"{azure_fake.base_url}/deployments/gpt-4o/chat/completions"
        unauthenticated = await client.post(url, params={"api-version": GA}, json=VALID)
        unversioned = await client.post(url, json=VALID, headers={"api-key": AZURE_KEY})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "401"
    assert unversioned.status_code == 404
    assert len(azure_fake.validation_errors) == 2
    azure_fake.validation_errors.clear()


async def test_fake_flags_both_credentials_at_once(azure_fake):
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{azure_fake.base_url}/deployments/gpt-4o/chat/completions",
            params={"api-version": GA},
            json=VALID,
            headers={"api-key": AZURE_KEY, "Authorization": f"Bearer {AZURE_KEY}"},
        )
    assert any("both api-key and Authorization" in p for p in azure_fake.validation_errors)
    azure_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(azure_fake):
    broken = chunk({"content": "x"})
    broken["object"] = "chat.completion"  # wrong for a chunk
    azure_fake.enqueue(sse_reply([broken]))
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{azure_fake.base_url}/deployments/gpt-4o/chat/completions",
            params={"api-version": GA},
            json={**VALID, "stream": True},
            headers={"api-key": AZURE_KEY},
        )
    assert any("object" in problem for problem in azure_fake.response_errors)
    azure_fake.response_errors.clear()


async def test_fake_serves_unknown_paths_like_azure(azure_fake):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{azure_fake.base_url}/models", params={"api-version": GA})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}
