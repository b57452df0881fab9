"""Anthropic HTTP errors, error events and transport failures -> GatewayError (DESIGN section 4)."""

from __future__ import annotations

import socket

import httpx
import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.anthropic import AnthropicProvider
from homa_server.providers.anthropic.error_mapping import (
    error_from_event,
    error_from_response,
    parse_reset,
    rate_limit_delay,
)
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes import anthropic_upstream as fx
from tests.providers.fakes.anthropic_upstream import (
    ANTHROPIC_TEST_KEY,
    RESET,
    Reply,
    anthropic_settings,
    error_reply,
    overloaded_reply,
    rate_limited_reply,
)

anthropic_upstream, anthropic_fake, anthropic_provider = (
    fx.anthropic_upstream,
    fx.anthropic_fake,
    fx.anthropic_provider,
)

MODEL = "claude-sonnet-4-5"


async def fail(provider: AnthropicProvider) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    return caught.value


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    [
        (
            error_reply(400, "invalid_request_error", "temperature: Input should be less than or equal to 1"),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (
            error_reply(
                400,
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, "
                "decrease input length or `max_tokens` and try again",
            ),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (
            error_reply(400, "invalid_request_error", "Output blocked by content filtering policy"),
            Code.INVALID_ARGUMENT,
            Reason.CONTENT_FILTERED,
            False,
        ),
        (
            # 413 `request_too_large` comes from Anthropic's error docs; the spec's ErrorResponse
            # union does not list that type, so the reply is not schema-checked.
            error_reply(
                413,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
                validate=False,
            ),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(401, "authentication_error", "invalid x-api-key"),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(402, "billing_error", "Your credit balance is too low to access the Anthropic API."),
            Code.RESOURCE_EXHAUSTED,
            Reason.UPSTREAM_QUOTA_EXHAUSTED,
            False,
        ),
        (
            error_reply(
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(404, "not_found_error", "model: claude-9"),
            Code.NOT_FOUND,
            Reason.UPSTREAM_NOT_FOUND,
            False,
        ),
        (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
        (
            error_reply(500, "api_error", "Internal server error"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(504, "timeout_error", "Request timeout"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (overloaded_reply(), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    ],
    ids=[
        "400",
        "400-prompt-too-long",
        "400-context-limit",
        "400-filter",
        "413",
        "401",
        "402",
        "403",
        "404",
        "429",
        "500",
        "504",
        "529",
    ],
)
async def test_status_mapping(anthropic_provider, anthropic_fake, reply, code, reason, retryable):
    anthropic_fake.enqueue(reply)
    error = await fail(anthropic_provider)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "anthropic"
    assert error.metadata["model"] == MODEL
    assert error.metadata["upstream_status"] == str(reply.status)
    assert error.metadata["upstream_request_id"].startswith("req_011CFx")  # the `request-id` header
    assert error.metadata["upstream_type"]
    assert error.code != Code.UNAUTHENTICATED


def test_request_id_from_the_body_without_header():
    error = error_from_response(
        "anthropic",
        MODEL,
        500,
        httpx.Headers(),
        b'{"type":"error","error":{"type":"api_error","message":"x"},"request_id":"req_b"}',
    )
    assert error.metadata["upstream_request_id"] == "req_b"


async def test_rate_limit_retry_after_and_quota(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(rate_limited_reply())
    error = await fail(anthropic_provider)
    assert error.retry_after == 7.0
    assert error.quota_violations[0].subject == f"anthropic/{MODEL}"
    assert error.quota_violations[0].description == "rate_limit_error"
    assert "30,000 input tokens per minute" in error.message


async def test_rate_limit_retry_after_ms_wins(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(rate_limited_reply({"retry-after-ms": "250"}))
    assert (await fail(anthropic_provider)).retry_after == 0.25


async def test_rate_limit_falls_back_to_the_reset_of_exhausted_limits(anthropic_provider, anthropic_fake):
    reply = rate_limited_reply()
    del reply.headers["retry-after"]
    anthropic_fake.enqueue(reply)
    error = await fail(anthropic_provider)
    assert error.retry_after is not None  # RESET lies in the future
    assert error.retryable


def test_rate_limit_delay_picks_the_latest_exhausted_reset():
    now = 1_800_000_000.0
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:05Z",
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": "2027-01-15T08:00:20Z",
            "anthropic-ratelimit-tokens-remaining": "100",
            "anthropic-ratelimit-tokens-reset": "2027-01-15T08:01:00Z",
        }
    )
    base = parse_reset("2027-01-15T08:00:00Z", 0.0)
    assert base is not None
    assert rate_limit_delay(headers, now=base) == pytest.approx(20.0)
    assert rate_limit_delay(httpx.Headers({"anthropic-ratelimit-tokens-reset": RESET}), now=now) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2027-01-15T08:00:30Z", 30.0), ("2027-01-15T09:00:30+01:00", 30.0), ("2027-01-15T07:00:00Z", 0.0)],
)
def test_parse_reset(value, expected):
    base = parse_reset("2027-01-15T08:00:00Z", 0.0)
    assert base is not None
    assert parse_reset(value, base) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "soon", "2027-01-15T08:00:30", "30"])
def test_bad_reset_values(value):
    assert parse_reset(value, 0.0) is None


async def test_overloaded_honours_retry_after_and_x_should_retry(anthropic_provider, anthropic_fake):
    reply = overloaded_reply()
    reply.headers = {"retry-after": "3", "x-should-retry": "false"}
    anthropic_fake.enqueue(reply)
    error = await fail(anthropic_provider)
    assert error.retry_after == 3.0
    assert not error.retryable


async def test_billing_error_is_not_retryable_and_has_no_retry_after(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(error_reply(402, "billing_error", "Your credit balance is too low."))
    error = await fail(anthropic_provider)
    assert error.retry_after is None
    assert error.quota_violations[0].description == "billing_error"


async def test_credentials_error_never_leaks_the_key(anthropic_fake):
    provider = AnthropicProvider(
        "anthropic", anthropic_settings(anthropic_fake.base_url, api_key="sk-ant-api03-WRONGKEY123")
    )
    try:
        error = await fail(provider)
    finally:
        await provider.aclose()
    anthropic_fake.validation_errors.clear()  # the fake records the wrong key; expected here
    assert error.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert "WRONGKEY" not in str(error.__dict__)
    assert "invalid x-api-key" not in error.message
    assert "check its API key" in error.message


async def test_key_like_tokens_in_upstream_messages_are_scrubbed(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(
        error_reply(400, "invalid_request_error", f"bad header {ANTHROPIC_TEST_KEY} and Bearer abc.def")
    )
    error = await fail(anthropic_provider)
    assert ANTHROPIC_TEST_KEY not in error.message
    assert "abc.def" not in error.message
    assert "[redacted]" in error.message


async def test_non_json_error_body(anthropic_provider, anthropic_fake):
    anthropic_fake.enqueue(
        Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False)
    )
    error = await fail(anthropic_provider)
    assert error.code == Code.UNAVAILABLE
    assert "<html>" not in error.message


async def test_connection_refused_is_unavailable(anthropic_fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = AnthropicProvider("anthropic", anthropic_settings(f"http://127.0.0.1:{port}"))
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


def test_error_event_without_type_is_unavailable():
    error = error_from_event("anthropic", "m", {"type": "error", "error": {"message": "oops"}})
    assert (error.code, error.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)


def test_error_event_that_is_not_an_object():
    error = error_from_event("anthropic", "m", {"type": "error", "error": "boom"})
    assert error.code == Code.UNAVAILABLE
    assert "boom" in error.message


@pytest.mark.parametrize(
    ("error_type", "reason"),
    [
        ("billing_error", Reason.UPSTREAM_QUOTA_EXHAUSTED),
        ("authentication_error", Reason.UPSTREAM_CREDENTIALS_REJECTED),
        ("not_found_error", Reason.UPSTREAM_NOT_FOUND),
        ("timeout_error", Reason.UPSTREAM_UNAVAILABLE),
        ("request_too_large", Reason.UPSTREAM_INVALID_REQUEST),
    ],
)
def test_error_event_inferred_status(error_type, reason):
    payload = {"type": "error", "error": {"type": error_type, "message": "x"}}
    assert error_from_event("anthropic", "m", payload).reason == reason


def test_unexpected_status():
    error = error_from_response("anthropic", "m", 302, httpx.Headers(), b"")
    assert (error.code, error.reason, error.retryable) == (Code.UNKNOWN, Reason.UPSTREAM_ERROR, False)


def test_long_upstream_messages_are_capped():
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"' + b"x" * 5000 + b'"}}'
    assert len(error_from_response("anthropic", "m", 400, httpx.Headers(), body).message) < 700
