"""The spec checks themselves: they must reject invalid traffic, or the other tests prove nothing
(canary tests in the sense of provider-specs/README section 5.1)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    TEST_KEY,
    chunk,
    error_reply,
    gemini_fake_fixture,
    gemini_upstream_fixture,
    quota_reply,
    response_json,
    sse_reply,
)
from tests.providers.gemini_spec import (
    EXAMPLES,
    validate_count_tokens_request,
    validate_error_body,
    validate_generate_content_request,
    validate_response,
)

AUTH = {"x-goog-api-key": TEST_KEY}
VALID = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
CALL = {"functionCall": {"name": "f", "args": {}}}
RESPONSE = {"functionResponse": {"name": "f", "response": {"output": 1}}}


def check(body: dict) -> list[str]:
    return validate_generate_content_request(orjson.dumps(body))


def test_valid_request_passes():
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}],
            },
            {"role": "model", "parts": [{"text": "t", "thought": True, "thoughtSignature": "c2ln"}, CALL]},
            {"role": "user", "parts": [RESPONSE]},
        ],
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        "generationConfig": {
            "temperature": 0.5,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 128, "includeThoughts": True},
        },
    }
    assert check(body) == []


@pytest.mark.parametrize(
    "body",
    [
        {"contents": "hi"},
        {"contents": []},
        {**VALID, "generationConfig": {"temprature": 1}},
        {**VALID, "generation_config": {"temperature": 1}},
        {**VALID, "generationConfig": {"max_output_tokens": 5}},
        {**VALID, "generationConfig": {"temperature": "0.5"}},
        {**VALID, "generationConfig": {"temperature": 3}},
        {**VALID, "generationConfig": {"stopSequences": ["a", "b", "c", "d", "e", "f"]}},
        {**VALID, "generationConfig": {"responseJsonSchema": {"type": "object"}}},
        {**VALID, "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        {**VALID, "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
        {
            **VALID,
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
        },
        {**VALID, "tools": [{"functionDeclarations": [{"name": "bad name"}]}]},
        {**VALID, "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "f"}]}]},
        {
            **VALID,
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "array"}}]}],
        },
        {"contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]},
        {"contents": [{"role": "user", "parts": []}]},
        {"contents": [{"role": "user", "parts": [{"thoughtSignature": "c2ln"}]}]},
        {
            "contents": [
                {"role": "user", "parts": [{"text": "a", "inlineData": {"mimeType": "x", "data": "AA=="}}]}
            ]
        },
        {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "@@@"}}]}]},
        {"contents": [{"role": "user", "parts": [{"text": "x", "thoughtSignature": "not base64!"}]}]},
        {"contents": [{"role": "user", "parts": [CALL]}]},
        {"contents": [{"role": "model", "parts": [RESPONSE]}]},
        {"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
        {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f"}}]}]},
        {"contents": [{"role": "user", "parts": [{"text": "x", "thought": True}]}]},
        {
            **VALID,
            "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]},
        },
    ],
)
def test_invalid_requests_are_caught(body):
    assert check(body) != []


def test_snake_case_is_named():
    problems = check({**VALID, "generationConfig": {"max_output_tokens": 5}})
    assert any("not camelCase" in p and "maxOutputTokens" in p for p in problems)


def test_discovery_is_the_reference_where_the_proto_lags():
    # thinkingLevel (Gemini 3) is in the discovery document but not in the pinned proto package.
    lagging = {**VALID, "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}}}
    assert check(lagging) == []
    assert check({**VALID, "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOWEST"}}}) != []
    typo = check({**VALID, "generationConfig": {"thinkingConfig": {"thinkingLevl": "LOW"}}})
    assert any(p.startswith("proto") for p in typo)
    assert any("unknown field" in p for p in typo)


def test_count_tokens_requests():
    inner = {"model": "models/gemini-2.5-flash", **VALID}
    assert validate_count_tokens_request(orjson.dumps({"generateContentRequest": inner})) == []
    assert validate_count_tokens_request(orjson.dumps(VALID)) == []
    assert validate_count_tokens_request(orjson.dumps({"generateContentRequest": VALID})) != []  # no model
    assert validate_count_tokens_request(orjson.dumps({})) != []
    assert validate_count_tokens_request(orjson.dumps({**VALID, "generateContentRequest": inner})) != []


def test_example_files_match_the_spec():
    for frame in (EXAMPLES / "streamGenerateContent-alt-sse.sse").read_bytes().split(b"\r\n\r\n"):
        if frame.startswith(b"data: "):
            assert validate_response("GenerateContentResponse", orjson.loads(frame[6:])) == []
    assert validate_error_body(orjson.loads((EXAMPLES / "error-429.json").read_bytes())) == []


def test_reply_builders_match_the_spec():
    assert validate_response("GenerateContentResponse", response_json()) == []
    assert validate_response("GenerateContentResponse", chunk([{"text": "x"}], finish_reason="STOP")) == []
    assert validate_error_body(orjson.loads(quota_reply().body)) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"candidates": [{"finishReason": "DONE"}]},
        {"candidates": [{"content": {"parts": [{"text": 1}]}}]},
        {"usageMetadata": {"prompt_token_count": 1}},
        {"responseID": "x"},
    ],
)
def test_invalid_responses_are_caught(payload):
    assert validate_response("GenerateContentResponse", payload) != []


@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"code": 429, "message": "x", "status": "TOO_MANY"}},
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
        {
            "error": {
                "code": 429,
                "message": "x",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": 27}],
            }
        },
        {"message": "x"},
    ],
)
def test_invalid_error_bodies_are_caught(payload):
    assert validate_error_body(payload) != []


# ---- the fake enforces it ------------------------------------------------------------------


async def test_fake_rejects_an_off_spec_body_and_records_it(gemini_fake):
    url = f"{gemini_fake.base_url}/models/gemini-2.5-flash:generateContent"
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url, json={"contents": [{"role": "wizard", "parts": [{"text": "Hi"}]}]}, headers=AUTH
        )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(gemini_fake.validation_errors) == 1
    assert "role" in gemini_fake.validation_errors[0]
    gemini_fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_requires_alt_sse_and_answers_a_json_array_without_it(gemini_fake):
    url = f"{gemini_fake.base_url}/models/gemini-2.5-flash:streamGenerateContent"
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=VALID, headers=AUTH)
    assert response.status_code == 400
    assert any("alt=sse" in p for p in gemini_fake.validation_errors)
    gemini_fake.validation_errors.clear()


async def test_fake_authenticates_like_google(gemini_fake):
    url = f"{gemini_fake.base_url}/models/gemini-2.5-flash:generateContent"
    async with httpx.AsyncClient() as client:
        missing = await client.post(url, json=VALID)
        wrong = await client.post(url, json=VALID, headers={"x-goog-api-key": "AIzaWrong"})
        in_query = await client.post(url, json=VALID, params={"key": TEST_KEY})
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert (wrong.status_code, wrong.json()["error"]["details"][0]["reason"]) == (400, "API_KEY_INVALID")
    assert in_query.status_code == 403
    assert any("x-goog-api-key" in p for p in gemini_fake.validation_errors)
    gemini_fake.validation_errors.clear()


async def test_fake_flags_its_own_off_spec_replies(gemini_fake):
    broken = chunk([{"text": "x"}])
    broken["candidates"][0]["finishReason"] = "FINISHED"
    gemini_fake.enqueue(sse_reply([broken]))
    url = f"{gemini_fake.base_url}/models/gemini-2.5-flash:streamGenerateContent"
    async with httpx.AsyncClient() as client:
        await client.post(url, json=VALID, headers=AUTH, params={"alt": "sse"})
    assert any("finishReason" in p or "FINISHED" in p for p in gemini_fake.response_errors)
    gemini_fake.response_errors.clear()


async def test_fake_flags_off_spec_error_replies(gemini_fake):
    gemini_fake.enqueue(error_reply(429, "slow down", "TOO_MANY_REQUESTS"))
    url = f"{gemini_fake.base_url}/models/gemini-2.5-flash:generateContent"
    async with httpx.AsyncClient() as client:
        await client.post(url, json=VALID, headers=AUTH)
    assert gemini_fake.response_errors != []
    gemini_fake.response_errors.clear()


async def test_fake_serves_unknown_models_and_paths_like_google(gemini_fake):
    async with httpx.AsyncClient() as client:
        unknown_model = await client.post(
            f"{gemini_fake.base_url}/models/gemini-9:generateContent", json=VALID, headers=AUTH
        )
        unknown_path = await client.get(f"{gemini_fake.base_url}/nope", headers=AUTH)
    assert unknown_model.status_code == 404
    assert "Call ListModels" in unknown_model.json()["error"]["message"]
    assert unknown_path.status_code == 404
    assert unknown_path.headers["content-type"].startswith("text/html")
    gemini_fake.validation_errors.clear()  # the unknown path is recorded as a violation
