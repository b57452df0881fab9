"""Cohere HTTP errors -> GatewayError: every documented status, rate limits and quotas, redaction,
metadata, and transport failures."""

from __future__ import annotations

import socket

import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.cohere.error_mapping import DEFAULT_RETRY_AFTER_S
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes.cohere_upstream import (
    COHERE_TEST_KEY,
    Reply,
    cohere_settings,
    error_reply,
    rate_limited_reply,
)

# The fake Cohere server and the adapter pointed at it (fixtures).
pytest_plugins = ("tests.providers.fakes.cohere_upstream",)

MODEL = "command-a-03-2025"


async def failure(provider: CohereProvider) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    return caught.value


# Every status the spec declares for POST /v2/chat (plus 402, which Cohere sends for billing).
STATUSES = [
    (
        400,
        "invalid request: message must not be empty in a turn",
        Code.INVALID_ARGUMENT,
        Reason.UPSTREAM_INVALID_REQUEST,
        False,
    ),
    (401, "invalid api token", Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (403, "access denied", Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (
        404,
        "model 'command-x' not found, make sure the correct model ID was used",
        Code.NOT_FOUND,
        Reason.UPSTREAM_NOT_FOUND,
        False,
    ),
    (422, "invalid request: unprocessable", Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False),
    (498, "invalid token", Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (499, "request cancelled", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    (500, "internal server error", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    (501, "feature not implemented", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, False),
    (503, "service unavailable", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    (504, "gateway timeout", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
]


@pytest.mark.parametrize(
    ("status", "text", "code", "reason", "retryable"), STATUSES, ids=[str(s[0]) for s in STATUSES]
)
async def test_status_mapping(cohere_provider, cohere_fake, status, text, code, reason, retryable):
    cohere_fake.enqueue(error_reply(status, text, error_id="err-42"))
    error = await failure(cohere_provider)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata == {
        "provider": "cohere",
        "model": MODEL,
        "upstream_status": str(status),
        "upstream_request_id": "err-42",
    }


async def test_payment_required_is_quota_exhausted(cohere_provider, cohere_fake):
    # 402 is not among the spec's responses for /v2/chat, so the fake does not check this reply.
    cohere_fake.enqueue(Reply(status=402, body=b'{"message":"Please add a payment method"}', validate=False))
    error = await failure(cohere_provider)
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        False,
    )


async def test_trial_key_per_minute_limit_is_rate_limited_with_retry_info(cohere_provider, cohere_fake):
    cohere_fake.enqueue(rate_limited_reply())
    error = await failure(cohere_provider)
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        True,
    )
    assert error.retry_after == 60.0  # "20 API calls / minute": the window
    assert error.metadata["upstream_request_id"] == "fx-err-1"
    assert [(q.subject, q.description) for q in error.quota_violations] == [
        (f"cohere/{MODEL}", "requests per minute")
    ]
    assert "Trial key" in error.message


async def test_retry_after_header_wins_when_present(cohere_provider, cohere_fake):
    cohere_fake.enqueue(rate_limited_reply(headers={"retry-after": "3"}))
    assert (await failure(cohere_provider)).retry_after == 3.0


async def test_429_without_window_uses_the_default_delay(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(429, "too many requests"))
    error = await failure(cohere_provider)
    assert error.reason == Reason.UPSTREAM_RATE_LIMITED
    assert error.retry_after == DEFAULT_RETRY_AFTER_S


async def test_trial_key_monthly_limit_is_quota_exhausted(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        error_reply(429, "You are using a Trial key, which is limited to 1000 API calls / month.")
    )
    error = await failure(cohere_provider)
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        False,
    )
    assert error.retry_after is None


async def test_503_honours_retry_after(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(503, "overloaded", headers={"retry-after": "5"}))
    assert (await failure(cohere_provider)).retry_after == 5.0


@pytest.mark.parametrize("status", [400, 422])
async def test_too_many_tokens_is_context_length_exceeded(cohere_provider, cohere_fake, status):
    cohere_fake.enqueue(
        error_reply(
            status,
            "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292. "
            "Try using a shorter prompt, or enabling prompt truncating.",
        )
    )
    error = await failure(cohere_provider)
    assert (error.code, error.reason) == (Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED)


async def test_blocked_prompt_is_content_filtered(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        error_reply(
            400, "blocked input: please adjust your prompt and try again, as it may be a potential violation"
        )
    )
    error = await failure(cohere_provider)
    assert (error.code, error.reason) == (Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED)


async def test_credential_errors_never_echo_the_upstream_message(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(401, f"invalid api token {COHERE_TEST_KEY}"))
    error = await failure(cohere_provider)
    assert COHERE_TEST_KEY not in error.message
    assert (
        error.message
        == "cohere rejected the gateway's credentials (with HTTP 401); check its API key settings"
    )


async def test_the_key_and_bearer_tokens_are_redacted_from_other_messages(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        error_reply(400, f"bad header Authorization: Bearer abc.def for key {COHERE_TEST_KEY}")
    )
    error = await failure(cohere_provider)
    assert COHERE_TEST_KEY not in error.message
    assert "abc.def" not in error.message
    assert "[redacted]" in error.message


async def test_long_messages_are_capped(cohere_provider, cohere_fake):
    cohere_fake.enqueue(error_reply(400, "x" * 5000))
    assert len((await failure(cohere_provider)).message) < 700


async def test_request_id_falls_back_to_the_trace_header(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        error_reply(500, "internal server error", error_id=None, headers={"x-debug-trace-id": "trace-9"})
    )
    assert (await failure(cohere_provider)).metadata["upstream_request_id"] == "trace-9"


async def test_error_body_that_is_not_json(cohere_provider, cohere_fake):
    cohere_fake.enqueue(
        Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False)
    )
    error = await failure(cohere_provider)
    assert (error.code, error.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)


async def test_unreachable_upstream_is_unavailable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = CohereProvider("cohere", cohere_settings(f"http://127.0.0.1:{port}"))
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()
    assert (error.code, error.reason, error.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    )
