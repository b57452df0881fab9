"""The Bedrock checks themselves: they must reject invalid traffic, or the other tests prove nothing.

Canaries in the sense of provider-specs/README section 5.1, plus proof that the test-side frame
writer produces AWS's exact bytes (it reproduces the example file and botocore decodes it).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from botocore.exceptions import EventStreamError

from tests.providers.bedrock_spec import (
    EXAMPLES,
    decode_stream,
    event_frame,
    validate_control_query,
    validate_event,
    validate_output,
    validate_request,
)
from tests.providers.fakes.bedrock_upstream import (
    API_KEY,
    MODEL,
    FakeBedrock,
    checked_fake,
    converse_response,
    json_reply,
    running_fake,
    stream_reply,
)

VALID = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
BEARER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


def test_a_valid_request_passes():
    assert validate_request("converse", MODEL, VALID) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"messages": [{"role": "wizard", "content": [{"text": "Hi"}]}]}, "wizard"),
        ({"messages": [{"role": "user", "content": [{}]}]}, "tagged union"),
        ({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}, "tagged union"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({**VALID, "inferenceConfig": {"maxTokens": "ten"}}, "inferenceConfig.maxTokens"),
        ({**VALID, "inferenceConfig": {"maxTokens": 0}}, "maxTokens"),
        ({**VALID, "inferenceConfig": {"temperature": 1.5}}, "maximum"),
        ({**VALID, "temperature": 0.5}, "Unknown parameter"),
        ({**VALID, "system": [{"text": ""}]}, "system[0].text"),
        ({**VALID, "toolConfig": {"tools": []}}, "toolConfig.tools"),
        (
            {
                **VALID,
                "toolConfig": {"tools": [{"toolSpec": {"name": "bad name!", "inputSchema": {"json": {}}}}]},
            },
            "does not match",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]}
                ]
            },
            "'bmp'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}],
                    }
                ]
            },
            "base64",
        ),
        ({**VALID, "modelId": MODEL}, "modelId belongs in the URL"),
        ({**VALID, "requestMetadata": {"user": "a<b>"}}, "does not match"),
    ],
    ids=[
        "bad-role",
        "empty-block",
        "two-kinds-in-one-block",
        "no-content",
        "max-tokens-type",
        "max-tokens-zero",
        "temperature-range",
        "unknown-field",
        "empty-system-text",
        "no-tools",
        "tool-name-pattern",
        "image-format-enum",
        "bad-base64",
        "model-in-body",
        "metadata-pattern",
    ],
)
def test_invalid_requests_are_caught(body, problem):
    problems = validate_request("converse", MODEL, body)
    assert problems != []
    assert any(problem in p for p in problems), problems


def test_count_tokens_needs_its_input_member():
    assert validate_request("count-tokens", MODEL, {"input": {"converse": VALID}}) == []
    assert validate_request("count-tokens", MODEL, VALID) != []


def test_control_plane_queries():
    assert validate_control_query("ListFoundationModels", "byOutputModality=TEXT") == []
    assert validate_control_query("ListFoundationModels", "byOutputModality=SOUND") != []
    assert validate_control_query("ListFoundationModels", "byOutputMode=TEXT") != []
    assert (
        validate_control_query("ListInferenceProfiles", "type=SYSTEM_DEFINED&maxResults=1000&nextToken=x")
        == []
    )
    assert validate_control_query("ListInferenceProfiles", "maxResults=5000") != []


def test_reply_checks_catch_drift():
    assert validate_output("bedrock-runtime", "Converse", converse_response()) == []
    broken = converse_response()
    del broken["stopReason"]
    assert validate_output("bedrock-runtime", "Converse", broken) != []
    assert validate_event("messageStop", {"stopReason": "end_turn"}) == []
    assert validate_event("messageStop", {"stopReason": "bored"}) != []
    assert validate_event("metadata", {"usage": {"inputTokens": 1}}) != []  # missing members
    assert validate_event("noSuchEvent", {}) != []


def test_frame_writer_reproduces_the_example_bytes():
    expected = (EXAMPLES / "converse-stream-tool-use.eventstream").read_bytes()
    lines = (EXAMPLES / "converse-stream-tool-use.events.jsonl").read_bytes().splitlines()
    written = b""
    for line in lines:
        ((name, payload),) = orjson.loads(line).items()
        assert validate_event(name, payload) == []
        written += event_frame(name, orjson.dumps(payload))
    assert written == expected
    assert decode_stream(written) == [orjson.loads(line) for line in lines]


def test_botocore_raises_on_the_example_exception_frame():
    data = (EXAMPLES / "converse-stream-throttling.eventstream").read_bytes()
    with pytest.raises(EventStreamError, match="throttlingException"):
        decode_stream(data)


async def test_fake_rejects_an_off_spec_body_and_records_it(fake):
    bad = {"messages": [{"role": "wizard", "content": [{"text": "Hi"}]}]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.base_url}/model/{MODEL}/converse", json=bad, headers=BEARER)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert "wizard" in response.json()["message"]
    assert len(fake.validation_errors) == 1
    fake.validation_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_fake_answers_403_without_credentials(fake):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.base_url}/model/{MODEL}/converse", json=VALID)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert fake.auth_errors == ["no Authorization header"]
    fake.auth_errors.clear()


async def test_fake_does_not_route_an_unencoded_arn(fake):
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-v1:0"
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.base_url}/model/{arn}/converse", json=VALID, headers=BEARER)
    assert response.status_code == 404
    assert response.headers["x-amzn-errortype"].startswith("UnknownOperationException")


async def test_fake_flags_its_own_off_spec_replies(fake):
    fake.enqueue(json_reply({"output": {}, "usage": {}}))
    fake.enqueue(stream_reply([("messageStop", {"stopReason": "bored"})]))
    async with httpx.AsyncClient() as client:
        await client.post(f"{fake.base_url}/model/{MODEL}/converse", json=VALID, headers=BEARER)
        await client.post(f"{fake.base_url}/model/{MODEL}/converse-stream", json=VALID, headers=BEARER)
    assert any("stopReason" in p for p in fake.response_errors)
    assert any("bored" in p for p in fake.response_errors)
    fake.response_errors.clear()
