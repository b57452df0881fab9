"""OpenAI HTTP errors, error events and transport failures -> GatewayError (DESIGN section 4)."""

from __future__ import annotations

import socket

import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.openai import OpenAIProvider
from homa_server.providers.openai.error_mapping import (
    error_from_event,
    error_from_response,
    parse_go_duration,
)
from tests.providers.conftest import OPENAI_TEST_KEY, call_ctx, chat_request, openai_settings
from tests.providers.fakes.openai_upstream import (
    MODEL_BEHAVIOURS,
    Reply,
    error_reply,
    insufficient_quota_reply,
    rate_limited_reply,
)


async def fail(provider: OpenAIProvider) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx())
    return caught.value


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    [
        (
            error_reply(400, "Invalid 'temperature'.", param="temperature"),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(
                400,
                "This model's maximum context length is 128000 tokens.",
                code="context_length_exceeded",
                param="messages",
            ),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (error_reply(422, "Unprocessable."), Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False),
        (
            error_reply(413, "Request too large."),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(401, "Incorrect API key provided.", code="invalid_api_key"),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(
                403,
                "Country, region, or territory not supported.",
                code="unsupported_country_region_territory",
            ),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(404, "The model `gpt-9` does not exist.", code="model_not_found"),
            Code.NOT_FOUND,
            Reason.UPSTREAM_NOT_FOUND,
            False,
        ),
        (error_reply(408, "Request timed out."), Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True),
        (error_reply(409, "Conflict."), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
        (
            error_reply(500, "The server had an error.", error_type="server_error"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(503, "The engine is currently overloaded.", error_type="server_error"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
        (insufficient_quota_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False),
    ],
    ids=[
        "400",
        "400-context",
        "422",
        "413",
        "401",
        "403",
        "404",
        "408",
        "409",
        "500",
        "503",
        "429-rate",
        "429-quota",
    ],
)
async def test_status_mapping(openai_provider, openai_fake, reply, code, reason, retryable):
    openai_fake.enqueue(reply)
    error = await fail(openai_provider)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "openai"
    assert error.metadata["model"] == "gpt-4o-mini"
    assert error.metadata["upstream_status"] == str(reply.status)
    assert error.metadata["upstream_request_id"].startswith("req_")
    assert error.code != Code.UNAUTHENTICATED


async def test_upstream_details_are_kept_in_metadata(openai_provider, openai_fake):
    openai_fake.enqueue(
        error_reply(400, "Invalid 'messages[0].content'.", param="messages[0].content", code="invalid_value")
    )
    error = await fail(openai_provider)
    assert error.metadata["upstream_type"] == "invalid_request_error"
    assert error.metadata["upstream_code"] == "invalid_value"
    assert error.metadata["upstream_param"] == "messages[0].content"
    assert "Invalid 'messages[0].content'." in error.message


async def test_rate_limit_retry_after_header(openai_provider, openai_fake):
    openai_fake.enqueue(rate_limited_reply())
    error = await fail(openai_provider)
    assert error.retry_after == 2.0
    assert error.quota_violations[0].subject == "openai/gpt-4o-mini"
    assert error.quota_violations[0].description == "rate_limit_exceeded"


async def test_rate_limit_retry_after_ms_wins(openai_provider, openai_fake):
    openai_fake.enqueue(rate_limited_reply({"retry-after-ms": "250"}))
    assert (await fail(openai_provider)).retry_after == 0.25


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # the exhausted dimension's reset (tokens: remaining 0 in the default headers)
        ({}, 1.5),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
        # nothing exhausted: the body's `type` ("tokens" in the example) names the limit
        ({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-requests": "20ms"}, 1.5),
        # ... and without that reset header, the request limit's reset
        (
            {
                "x-ratelimit-remaining-tokens": "5",
                "x-ratelimit-reset-tokens": "",
                "x-ratelimit-reset-requests": "20ms",
            },
            0.02,
        ),
    ],
)
async def test_rate_limit_falls_back_to_reset_headers(openai_provider, openai_fake, headers, expected):
    reply = rate_limited_reply(headers)
    del reply.headers["retry-after"]
    openai_fake.enqueue(reply)
    assert (await fail(openai_provider)).retry_after == pytest.approx(expected)


async def test_quota_exhausted_has_no_retry_after(openai_provider, openai_fake):
    openai_fake.enqueue(insufficient_quota_reply())
    error = await fail(openai_provider)
    assert error.retry_after is None
    assert not error.retryable


async def test_server_error_honours_retry_after_and_x_should_retry(openai_provider, openai_fake):
    reply = error_reply(
        503, "Overloaded.", error_type="server_error", headers={"retry-after": "7", "x-should-retry": "false"}
    )
    openai_fake.enqueue(reply)
    error = await fail(openai_provider)
    assert error.retry_after == 7.0
    assert not error.retryable


async def test_credentials_error_never_leaks_the_key(openai_provider, openai_fake):
    openai_fake.enqueue(MODEL_BEHAVIOURS["fake-401"](None))
    error = await fail(openai_provider)
    assert "sk-" not in error.message
    assert "Incorrect API key" not in error.message
    assert OPENAI_TEST_KEY not in str(error.__dict__)


async def test_key_like_tokens_in_upstream_messages_are_scrubbed(openai_provider, openai_fake):
    openai_fake.enqueue(error_reply(400, f"Bad header Bearer {OPENAI_TEST_KEY} and key sk-proj-ABCDEF123456"))
    error = await fail(openai_provider)
    assert OPENAI_TEST_KEY not in error.message
    assert "sk-proj-ABCDEF123456" not in error.message
    assert "[redacted]" in error.message


async def test_non_json_error_body(openai_provider, openai_fake):
    openai_fake.enqueue(
        Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False)
    )
    error = await fail(openai_provider)
    assert error.code == Code.UNAVAILABLE
    assert "<html>" not in error.message


async def test_connection_refused_is_unavailable(openai_fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider("openai", openai_settings(f"http://127.0.0.1:{port}/v1"))
    try:
        error = await fail(provider)
    finally:
        await provider.aclose()
    assert (error.code, error.reason, error.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    )
    assert str(port) not in error.message


# ---- pure mapping functions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("500us", 0.0005),
        ("0s", 0.0),
        ("1.5s", 1.5),
    ],
)
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1", "1x", "s", "1s junk", "-1s"])
def test_bad_go_durations(text):
    assert parse_go_duration(text) is None


def test_error_event_without_code_or_type_is_unavailable():
    error = error_from_event("openai", "m", {"message": "oops"})
    assert (error.code, error.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)


def test_error_event_that_is_not_an_object():
    error = error_from_event("openai", "m", "boom")
    assert error.code == Code.UNAVAILABLE
    assert "boom" in error.message


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "too long"},
            Reason.CONTEXT_LENGTH_EXCEEDED,
        ),
        (
            {"type": "insufficient_quota", "code": "insufficient_quota", "message": "quota"},
            Reason.UPSTREAM_QUOTA_EXHAUSTED,
        ),
        ({"type": "invalid_request_error", "code": None, "message": "bad"}, Reason.UPSTREAM_INVALID_REQUEST),
    ],
)
def test_error_event_inferred_status(error, reason):
    assert error_from_event("openai", "m", error).reason == reason


def test_compatible_server_string_error_body():
    error = error_from_response("vllm", "m", 400, {}, b'{"error": "model is required"}')
    assert error.reason == Reason.UPSTREAM_INVALID_REQUEST
    assert "model is required" in error.message


def test_unexpected_status():
    error = error_from_response("openai", "m", 302, {}, b"")
    assert (error.code, error.reason, error.retryable) == (Code.UNKNOWN, Reason.UPSTREAM_ERROR, False)


def test_long_upstream_messages_are_capped():
    error = error_from_response("openai", "m", 400, {}, b'{"error": {"message": "' + b"x" * 5000 + b'"}}')
    assert len(error.message) < 700
