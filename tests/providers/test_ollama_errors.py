"""Ollama HTTP errors, error lines and transport failures -> GatewayError (DESIGN section 4)."""

from __future__ import annotations

import socket

import httpx
import pytest
from pydantic import SecretStr

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.ollama import OllamaProvider
from homa_server.providers.ollama.error_mapping import ErrorMapper
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    OLLAMA_TEST_KEY,
    OVERLOADED_TEXT,
    USAGE_LIMIT_TEXT,
    FakeOllama,
    Reply,
    error_reply,
    ollama_fake_fixture,
    ollama_provider_fixture,
    ollama_settings,
    ollama_upstream_fixture,
    rate_limited_reply,
    usage_limit_reply,
)


async def fail(provider: OllamaProvider, model: str = "llama3.2") -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(model))
    return caught.value


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    [
        (
            error_reply(400, 'invalid options: "temprature"'),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(400, "registry.ollama.ai/library/gemma:2b does not support tools"),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(400, "the input length exceeds the context length"),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (
            error_reply(500, "input exceeds maximum context length"),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (error_reply(422, "unprocessable"), Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST, False),
        (error_reply(401, "unauthorized"), Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
        (error_reply(403, "forbidden"), Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False),
        (
            error_reply(404, 'model "llama9" not found, try pulling it first'),
            Code.NOT_FOUND,
            Reason.UPSTREAM_NOT_FOUND,
            False,
        ),
        (error_reply(408, "timeout"), Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT, True),
        (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
        (usage_limit_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_QUOTA_EXHAUSTED, False),
        (
            error_reply(500, "the model failed to generate a response"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(502, "could not connect to ollama.com"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (error_reply(503, OVERLOADED_TEXT), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
        (
            error_reply(503, "server busy, please try again.  maximum pending requests exceeded"),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
    ],
    ids=[
        "400",
        "400-no-tools",
        "400-context",
        "500-context",
        "422",
        "401",
        "403",
        "404",
        "408",
        "429-rate",
        "429-usage-limit",
        "500",
        "502",
        "503-cloud",
        "503-queue-full",
    ],
)
async def test_status_mapping(ollama_provider, ollama_fake, reply, code, reason, retryable):
    ollama_fake.enqueue(reply)
    error = await fail(ollama_provider)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "ollama"
    assert error.metadata["model"] == "llama3.2"
    assert error.metadata["upstream_status"] == str(reply.status)


async def test_upstream_text_is_passed_on(ollama_provider, ollama_fake):
    error = await fail(ollama_provider, "fake-404")
    assert error.message == (
        'ollama does not know the resource (with HTTP 404): model "fake-404" not found, try pulling it first'
    )


async def test_429_without_retry_after_uses_the_configured_default(ollama_provider, ollama_fake):
    ollama_fake.enqueue(rate_limited_reply())
    error = await fail(ollama_provider)
    assert error.retry_after == 1.0  # Ollama documents no rate-limit headers
    assert error.quota_violations[0].subject == "ollama/llama3.2"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "7"}, 7.0), ({"Retry-After": "1.5"}, 1.5), ({"retry-after-ms": "250"}, 0.25)],
)
async def test_429_honours_retry_after_from_a_proxy(ollama_provider, ollama_fake, headers, expected):
    ollama_fake.enqueue(rate_limited_reply(headers))
    assert (await fail(ollama_provider)).retry_after == expected


async def test_retry_after_default_can_be_changed_or_switched_off(ollama_fake: FakeOllama):
    for option, expected in ((5, 5.0), (None, None)):
        settings = ollama_settings(ollama_fake.base_url, options={"rate_limit_retry_after_s": option})
        provider = OllamaProvider("ollama", settings)
        try:
            ollama_fake.enqueue(rate_limited_reply())
            assert (await fail(provider)).retry_after == expected
        finally:
            await provider.aclose()


async def test_usage_limit_is_quota_not_rate(ollama_provider, ollama_fake):
    ollama_fake.enqueue(usage_limit_reply())
    error = await fail(ollama_provider)
    assert error.retry_after is None
    assert USAGE_LIMIT_TEXT in error.message


async def test_cloud_reference_becomes_the_upstream_request_id(ollama_provider, ollama_fake):
    ollama_fake.enqueue(error_reply(503, OVERLOADED_TEXT, {"retry-after": "2"}))
    error = await fail(ollama_provider)
    assert error.metadata["upstream_request_id"] == "aaa65c70-cfa0-446b-86f1-4ab0e2deb9e4"
    assert error.retry_after == 2.0


async def test_x_request_id_header_wins(ollama_provider, ollama_fake):
    ollama_fake.enqueue(error_reply(500, OVERLOADED_TEXT, {"x-request-id": "req-proxy-1"}))
    assert (await fail(ollama_provider)).metadata["upstream_request_id"] == "req-proxy-1"


async def test_rejected_key_never_leaks(ollama_fake: FakeOllama):
    ollama_fake.require_key = "the-right-key"
    provider = OllamaProvider(
        "ollama", ollama_settings(ollama_fake.base_url, api_key=SecretStr(OLLAMA_TEST_KEY))
    )
    try:
        error = await fail(provider)
        with pytest.raises(GatewayError) as streamed:
            await collect(provider.stream_chat(chat_request(), call_ctx("llama3.2")))
    finally:
        await provider.aclose()
    for failure in (error, streamed.value):
        assert (failure.code, failure.reason) == (Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED)
        assert (
            failure.message
            == "ollama rejected the gateway's credentials (with HTTP 401); check its API key settings"
        )
        assert OLLAMA_TEST_KEY not in str(failure.metadata)


def test_echoed_secrets_are_scrubbed():
    mapper = ErrorMapper("ollama", 1.0, "sekrit-key-123")
    error = mapper.from_response(
        "m", 400, httpx.Headers(), b'{"error":"bad header Authorization: Bearer abc.def, key sekrit-key-123"}'
    )
    assert "abc.def" not in error.message
    assert "sekrit-key-123" not in error.message
    assert "[redacted]" in error.message


def test_long_messages_are_capped():
    error = ErrorMapper("ollama", 1.0, None).from_response(
        "m", 400, httpx.Headers(), b'{"error":"' + b"x" * 5000 + b'"}'
    )
    assert len(error.message) < 600


def test_non_json_error_bodies():
    mapper = ErrorMapper("ollama", 1.0, None)
    proxy = mapper.from_response("m", 502, httpx.Headers(), b"<html>Bad Gateway</html>")
    assert (proxy.code, proxy.message) == (Code.UNAVAILABLE, "ollama is unavailable (with HTTP 502)")
    openai_style = mapper.from_response("m", 400, httpx.Headers(), b'{"error":{"message":"bad thing"}}')
    assert openai_style.message.endswith(": bad thing")


def test_mid_stream_error_objects():
    mapper = ErrorMapper("ollama", 1.0, None)
    error = mapper.from_line("m", {"message": "odd"})
    assert (error.code, error.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
    assert "upstream_status" not in error.metadata
    assert error.message == 'ollama is unavailable (during the stream): {"message":"odd"}'


async def test_unknown_status_is_upstream_error(ollama_provider, ollama_fake):
    ollama_fake.enqueue(
        Reply(status=302, body=b"", headers={"location": "https://elsewhere"}, validate=False)
    )
    error = await fail(ollama_provider)
    assert (error.code, error.reason) == (Code.UNKNOWN, Reason.UPSTREAM_ERROR)


# ---- transport failures ------------------------------------------------------------------------


async def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    provider = OllamaProvider("ollama", ollama_settings(f"http://127.0.0.1:{port}"))
    try:
        unary = await fail(provider)
        with pytest.raises(GatewayError) as streamed:
            await collect(provider.stream_chat(chat_request(), call_ctx("llama3.2")))
        with pytest.raises(GatewayError) as listed:
            await provider.list_models()
    finally:
        await provider.aclose()
    for error in (unary, streamed.value, listed.value):
        assert (error.code, error.reason, error.retryable) == (
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        )
