"""Gemini HTTP errors, error events and transport failures -> GatewayError (DESIGN section 4)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, QuotaViolation, Reason
from homa_server.providers.gemini import GeminiProvider
from homa_server.providers.gemini.error_mapping import error_from_event, error_from_response, parse_duration
from tests.providers.conftest import chat_request
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    TEST_KEY,
    Reply,
    error_reply,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_settings,
    gemini_upstream_fixture,
    invalid_key_reply,
    quota_reply,
    rate_limited_reply,
)


async def fail(provider: GeminiProvider) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), gemini_ctx())
    return caught.value


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    [
        (
            error_reply(
                400, "* GenerateContentRequest.generation_config.top_k: must be positive", "INVALID_ARGUMENT"
            ),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(
                400,
                "The input token count (1234567) exceeds the maximum number of tokens allowed (1048576).",
                "INVALID_ARGUMENT",
            ),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (invalid_key_reply(), Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
        (
            error_reply(400, "User location is not supported for the API use.", "FAILED_PRECONDITION"),
            Code.INTERNAL,
            Reason.UPSTREAM_ERROR,
            False,
        ),
        (
            error_reply(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(403, "The caller does not have permission", "PERMISSION_DENIED"),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(
                404,
                "models/gemini-9 is not found for API version v1beta, or is not supported for "
                "generateContent.",
                "NOT_FOUND",
            ),
            Code.NOT_FOUND,
            Reason.UPSTREAM_NOT_FOUND,
            False,
        ),
        (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
        (
            error_reply(499, "The operation was cancelled.", "CANCELLED"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(500, "An internal error has occurred.", "INTERNAL"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(504, "Deadline expired before operation could complete.", "DEADLINE_EXCEEDED"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
    ],
    ids=[
        "400",
        "400-context",
        "400-bad-key",
        "400-precondition",
        "401",
        "403",
        "404",
        "429",
        "499",
        "500",
        "503",
        "504",
        "502-html",
    ],
)
async def test_status_mapping(gemini_provider, gemini_fake, reply, code, reason, retryable):
    gemini_fake.enqueue(reply)
    error = await fail(gemini_provider)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "gemini"
    assert error.metadata["model"] == "gemini-2.5-flash"
    assert error.metadata["upstream_status"] == str(reply.status)


async def test_429_example_gives_retry_after_and_quota(gemini_provider, gemini_fake):
    gemini_fake.enqueue(rate_limited_reply())
    error = await fail(gemini_provider)
    assert error.retry_after == 27.0
    assert error.metadata["upstream_code"] == "RESOURCE_EXHAUSTED"
    assert error.quota_violations == [QuotaViolation("gemini/gemini-2.5-flash", "rate_limit")]


async def test_429_with_quota_failure_details(gemini_provider, gemini_fake):
    gemini_fake.enqueue(quota_reply("0.750s"))
    error = await fail(gemini_provider)
    assert error.retry_after == 0.75
    assert error.quota_violations == [
        QuotaViolation(
            "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        )
    ]
    assert "exceeded your current quota" in error.message


async def test_503_with_retry_info_keeps_the_delay(gemini_provider, gemini_fake):
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]
    gemini_fake.enqueue(error_reply(503, "The model is overloaded.", "UNAVAILABLE", details=details))
    error = await fail(gemini_provider)
    assert error.retry_after == 2.0


async def test_credential_errors_use_a_fixed_message(gemini_provider, gemini_fake):
    gemini_fake.enqueue(invalid_key_reply())
    error = await fail(gemini_provider)
    assert (
        error.message
        == "gemini rejected the gateway's credentials (with HTTP 400); check its API key settings"
    )
    assert error.metadata["upstream_reason"] == "API_KEY_INVALID"


async def test_wrong_key_is_rejected_by_the_fake_like_google(gemini_fake):
    provider = GeminiProvider(
        "gemini", gemini_settings(gemini_fake.base_url, api_key="AIzaWrongKey0123456789")
    )
    try:
        error = await fail(provider)
    finally:
        await provider.aclose()
    assert error.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert "AIza" not in error.message


async def test_missing_key_through_a_proxy_is_permission_denied(gemini_fake):
    provider = GeminiProvider("gemini", gemini_settings(gemini_fake.base_url, api_key=None))
    try:
        error = await fail(provider)
    finally:
        await provider.aclose()
    assert gemini_fake.last.headers.get("x-goog-api-key") is None
    assert error.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert error.metadata["upstream_status"] == "403"


async def test_secrets_in_upstream_messages_are_redacted(gemini_provider, gemini_fake):
    url = "https://generativelanguage.googleapis.com/v1beta/models/x"
    message = f"Bad request for {url}?key={TEST_KEY} ({TEST_KEY})"
    gemini_fake.enqueue(error_reply(400, message, "INVALID_ARGUMENT"))
    error = await fail(gemini_provider)
    assert TEST_KEY not in error.message
    assert "[redacted]" in error.message


async def test_long_upstream_messages_are_capped(gemini_provider, gemini_fake):
    gemini_fake.enqueue(error_reply(400, "x" * 5000, "INVALID_ARGUMENT"))
    error = await fail(gemini_provider)
    assert len(error.message) < 700


async def test_request_info_detail_is_the_upstream_request_id(gemini_provider, gemini_fake):
    details = [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "req-123"}]
    gemini_fake.enqueue(error_reply(500, "An internal error has occurred.", "INTERNAL", details=details))
    error = await fail(gemini_provider)
    assert error.metadata["upstream_request_id"] == "req-123"


async def test_errors_of_count_tokens_and_list_models_are_mapped(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        rate_limited_reply(), error_reply(403, "The caller does not have permission", "PERMISSION_DENIED")
    )
    with pytest.raises(GatewayError) as counted:
        await gemini_provider.count_tokens(
            chat_pb2.CountTokensRequest(messages=chat_request().messages), gemini_ctx()
        )
    assert counted.value.reason == Reason.UPSTREAM_RATE_LIMITED
    with pytest.raises(GatewayError) as listed:
        await gemini_provider.list_models()
    assert listed.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED


# ---- transport -----------------------------------------------------------------------------


async def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GeminiProvider("gemini", gemini_settings(f"http://127.0.0.1:{port}/v1beta"))
    try:
        error = await fail(provider)
    finally:
        await provider.aclose()
    assert (error.code, error.reason, error.retryable) == (
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    )


async def test_unary_deadline_is_upstream_timeout(gemini_provider, gemini_fake):
    slow = error_reply(500, "late", "INTERNAL")
    slow.delay = 2.0
    gemini_fake.enqueue(slow)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.complete_chat(chat_request(), gemini_ctx(deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.UPSTREAM_TIMEOUT


# ---- the mapping functions directly --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("27s", 27.0),
        ("1.5s", 1.5),
        ("0.250s", 0.25),
        ("0s", 0.0),
        ("27", None),
        ("-1s", None),
        ("abc", None),
        (None, None),
        ("infs", None),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"code": 500, "message": "Internal error", "status": "INTERNAL"}, Reason.UPSTREAM_UNAVAILABLE),
        ({"message": "overloaded", "status": "UNAVAILABLE"}, Reason.UPSTREAM_UNAVAILABLE),
        ({"message": "bad", "status": "INVALID_ARGUMENT"}, Reason.UPSTREAM_INVALID_REQUEST),
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, Reason.UPSTREAM_RATE_LIMITED),
        ("a plain string", Reason.UPSTREAM_UNAVAILABLE),
    ],
)
def test_error_events(error, reason):
    mapped = error_from_event("gemini", "gemini-2.5-flash", error)
    assert mapped.reason == reason
    assert "upstream_status" not in mapped.metadata
    assert "during the stream" in mapped.message


def test_error_inside_a_json_array_body():
    body = b'[{"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}]'
    error = error_from_response("gemini", "m", 404, httpx.Headers(), body)
    assert error.reason == Reason.UPSTREAM_NOT_FOUND
    assert error.metadata["upstream_code"] == "NOT_FOUND"


def test_unexpected_status_is_upstream_error():
    error = error_from_response("gemini", "m", 302, httpx.Headers(), b"")
    assert (error.code, error.reason) == (Code.UNKNOWN, Reason.UPSTREAM_ERROR)
