"""Venice HTTP error statuses and bodies -> GatewayError; rate-limit headers -> retry_after."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.venice import VeniceProvider
from homa_server.providers.venice.error_mapping import error_from_event, error_from_response
from homa_server.providers.venice.rate_limits import rate_limit_delay
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes.openai_upstream import Reply
from tests.providers.fakes.venice_upstream import (
    VENICE_TEST_KEY,
    error_reply,
    openai_style_error,
    rate_limited_reply,
    venice_settings,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_provider_fixture as _venice_provider  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401

MODEL = "zai-org-glm-5-1"
TOO_MANY_TOKENS = (
    "Your request exceeds the model's maximum context. Please reduce your prompt or completion length."
)
INVALID_DETAILS = {"_errors": [], "messages": {"_errors": ["Required"]}}
INVALID_ISSUES = [{"code": "invalid_type", "expected": "array", "received": "undefined", "path": ["messages"],
                   "message": "Required"}]  # fmt: skip

STATUS_CASES = [
    (
        error_reply(400, "Invalid request parameters", details=INVALID_DETAILS, issues=INVALID_ISSUES),
        Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False,
    ),
    (
        openai_style_error(
            400, TOO_MANY_TOKENS,
            error_type="invalid_request_error", code="context_length_exceeded", param="messages",
        ),
        Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False,
    ),
    (
        error_reply(400, TOO_MANY_TOKENS),
        Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED, False,
    ),
    (error_reply(401, "Authentication failed"), Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (error_reply(401, "This model is only available to Pro users"),
     Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (
        error_reply(402, "Insufficient USD or Diem balance to complete request. Visit "
                         "https://venice.ai/settings/api to add credits."),
        Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False,
    ),
    (error_reply(403, "Unauthorized access"), Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
    (error_reply(404, "Specified model not found"), Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False),
    (
        error_reply(413, "Request body exceeds the maximum allowed size.", code="PAYLOAD_TOO_LARGE"),
        Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False,
    ),
    (error_reply(415, "Invalid request content-type"),
     Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False),
    (
        error_reply(422, "Your prompt violates the content policy of Venice.ai or the model provider"),
        Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False,
    ),
    (error_reply(422, "Image dimensions exceed the maximum allowed."),
     Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False),
    (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
    (
        error_reply(429, "The model is currently overloaded. Please try again later.", {"retry-after": "30"}),
        Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True,
    ),
    (error_reply(500, "Inference processing failed"), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    (error_reply(503, "The model is at capacity. Please try again later."),
     Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
    (
        error_reply(504, "The request took too long to complete and was timed-out. For long-running "
                         "inference requests, use the streaming API by setting `stream=true`."),
        Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    STATUS_CASES,
    ids=[
        "400-invalid", "400-context-openai-style", "400-too-many-tokens", "401", "401-pro-only", "402", "403",
        "404", "413", "415", "422-content-policy", "422-media", "429", "429-overloaded", "500", "503", "504",
    ],
)  # fmt: skip
async def test_status_mapping(venice_provider, venice_fake, reply, code, reason, retryable):
    venice_fake.enqueue(reply)
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "venice"
    assert error.metadata["model"] == MODEL
    assert error.metadata["upstream_status"] == str(reply.status)


async def test_validation_details_reach_the_message(venice_provider, venice_fake):
    venice_fake.enqueue(STATUS_CASES[0][0])
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.message == (
        "venice rejected the request (with HTTP 400): Invalid request parameters (messages: Required)"
    )


def test_zod_details_tree_without_issues():
    details = {"_errors": [], "temperature": {"_errors": ["Too big"]}}
    body = orjson.dumps({"error": "Invalid request parameters", "details": details})
    error = error_from_response("venice", MODEL, 400, httpx.Headers(), body)
    assert error.message.endswith("Invalid request parameters (temperature: Too big)")


async def test_openai_style_error_fields_are_kept_in_metadata(venice_provider, venice_fake):
    venice_fake.enqueue(STATUS_CASES[1][0])
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    metadata = caught.value.metadata
    assert metadata["upstream_code"] == "context_length_exceeded"
    assert metadata["upstream_type"] == "invalid_request_error"
    assert metadata["upstream_param"] == "messages"


async def test_upstream_request_id_is_kept(venice_provider, venice_fake):
    venice_fake.enqueue(error_reply(400, "The provider rejected the request", request_id="req_abc123"))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.metadata["upstream_request_id"] == "req_abc123"


async def test_rate_limit_waits_for_the_exhausted_request_limit(venice_provider, venice_fake):
    venice_fake.enqueue(rate_limited_reply(exhausted="requests", reset_in=20))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after is not None
    assert 18.0 <= caught.value.retry_after <= 20.0  # from a Unix-timestamp header, second resolution
    assert caught.value.quota_violations[0].description == "requests"


async def test_rate_limit_waits_for_the_exhausted_token_limit(venice_provider, venice_fake):
    venice_fake.enqueue(rate_limited_reply(exhausted="tokens", reset_in=7))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after == 7.0
    assert caught.value.quota_violations[0].description == "tokens"


NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after": "30", "x-ratelimit-reset-tokens": "5"}, "", 30.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": str(int(NOW) + 12)}, "", 12.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": str(NOW_MS + 2500)}, "", 2.5),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "9"}, "", 9.0),
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": str(int(NOW) + 3),
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "40",
            },
            "",
            40.0,
        ),
        ({"x-ratelimit-reset-requests": str(int(NOW) + 4), "x-ratelimit-reset-tokens": "9"}, "", 4.0),
        ({"x-ratelimit-reset-tokens": "9"}, "", 9.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": str(int(NOW) - 5)}, "", 0.0),
        ({}, "Too many failed attempts (> 20) resulting in a non-success status code. Please wait 30s", 30.0),
        ({"x-ratelimit-resets": str(NOW_MS + 11_000)}, "Too many failed attempts (> 50) ...", 11.0),
        ({"x-ratelimit-reset-requests": "soon"}, "", None),
        ({}, "", None),
    ],
    ids=[
        "retry-after-wins", "requests-timestamp-s", "requests-timestamp-ms", "tokens-seconds",
        "both-exhausted", "none-exhausted-requests-first", "only-tokens", "reset-in-the-past",
        "error-budget", "error-budget-resets", "malformed", "nothing",
    ],
)  # fmt: skip
def test_rate_limit_delay(headers, message, expected):
    assert rate_limit_delay(httpx.Headers(headers), message, now=NOW) == expected


async def test_failed_request_budget_429(venice_provider, venice_fake):
    message = "Too many failed attempts (> 20) resulting in a non-success status code. Please wait 30s."
    venice_fake.enqueue(error_reply(429, message))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_RATE_LIMITED
    assert caught.value.retry_after == 30.0
    assert caught.value.quota_violations[0].description == "failed_request_budget"


async def test_overloaded_429_honours_retry_after(venice_provider, venice_fake):
    venice_fake.enqueue(STATUS_CASES[13][0])
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after == 30.0


async def test_quota_exhausted_has_no_retry_after(venice_provider, venice_fake):
    venice_fake.enqueue(STATUS_CASES[5][0])
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after is None
    assert caught.value.quota_violations[0].description == "insufficient_balance"


async def test_credentials_error_never_leaks_the_key(venice_provider, venice_fake):
    venice_fake.enqueue(error_reply(401, f"Authentication failed for key {VENICE_TEST_KEY}"))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert VENICE_TEST_KEY not in str(caught.value)
    assert (
        caught.value.message
        == "venice rejected the gateway's credentials (with HTTP 401); check its API key settings"
    )


async def test_key_like_tokens_in_upstream_messages_are_scrubbed(venice_provider, venice_fake):
    venice_fake.enqueue(error_reply(400, f"Bad header Bearer {VENICE_TEST_KEY} and key {VENICE_TEST_KEY}"))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert "INFERENCE-KEY" not in caught.value.message
    assert "[redacted]" in caught.value.message


async def test_non_json_error_body(venice_provider, venice_fake):
    venice_fake.enqueue(
        Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False)
    )
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_unavailable():
    provider = VeniceProvider("venice", venice_settings(f"http://127.0.0.1:{free_port()}/api/v1"))
    try:
        with pytest.raises(GatewayError) as caught:
            await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        ({"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
         Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED),
        ({"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"},
         Code.INVALID_ARGUMENT, Reason.CONTEXT_LENGTH_EXCEEDED),
        ({"message": "stale", "type": "api_error", "code": "e2ee_attestation_stale"},
         Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("upstream went away", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
    ],
)  # fmt: skip
def test_error_event_status_is_inferred(error, code, reason):
    mapped = error_from_event("venice", MODEL, error)
    assert (mapped.code, mapped.reason) == (code, reason)


def test_long_upstream_messages_are_capped():
    body = b'{"error": "' + b"x" * 5000 + b'"}'
    error = error_from_response("venice", MODEL, 400, httpx.Headers(), body)
    assert len(error.message) < 700


def test_rate_limit_uses_the_clock_for_timestamps():
    headers = httpx.Headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": str(int(time.time()) + 5)}
    )
    delay = rate_limit_delay(headers)
    assert delay is not None
    assert 3.5 <= delay <= 5.0
