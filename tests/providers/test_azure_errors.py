"""Error mapping: every documented Azure status and error body -> GatewayError, retry delays,
metadata, secrets kept out of messages, transport failures."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.azure_openai import AzureOpenAIProvider
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import (
    AZURE_KEY,
    azure_settings,
    content_filter_reply,
    error_reply,
    rate_limited_reply,
)

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake
azure_provider = fake.azure_provider


async def failure(provider, deployment: str = "gpt-4o", *, stream: bool = False) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        if stream:
            await collect(provider.stream_chat(chat_request(), call_ctx(deployment)))
        else:
            await provider.complete_chat(chat_request(), call_ctx(deployment))
    return caught.value


@pytest.mark.parametrize(
    ("reply", "code", "reason", "retryable"),
    [
        (
            error_reply(
                400, "invalid_request_error", "Invalid value for 'tool_choice'.", param="tool_choice"
            ),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(
                400,
                "context_length_exceeded",
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130415 tokens. Please reduce the length of the messages.",
                param="messages",
                type="invalid_request_error",
            ),
            Code.INVALID_ARGUMENT,
            Reason.CONTEXT_LENGTH_EXCEEDED,
            False,
        ),
        (content_filter_reply(), Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False),
        (content_filter_reply(observed=True), Code.INVALID_ARGUMENT, Reason.CONTENT_FILTERED, False),
        (
            error_reply(401, "401", "Access denied."),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (
            error_reply(
                403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource."
            ),
            Code.INTERNAL,
            Reason.UPSTREAM_CREDENTIALS_REJECTED,
            False,
        ),
        (error_reply(404, "404", "Resource not found"), Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False),
        (
            error_reply(408, "Timeout", "The operation was timeout."),
            Code.DEADLINE_EXCEEDED,
            Reason.UPSTREAM_TIMEOUT,
            True,
        ),
        (error_reply(409, "Conflict", "Try again."), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE, True),
        (
            error_reply(413, "413", "Request entity too large."),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (
            error_reply(422, "422", "Unprocessable entity."),
            Code.INVALID_ARGUMENT,
            Reason.UPSTREAM_INVALID_REQUEST,
            False,
        ),
        (rate_limited_reply(), Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED, True),
        (
            error_reply(429, "insufficient_quota", "You exceeded your current quota."),
            Code.RESOURCE_EXHAUSTED,
            Reason.UPSTREAM_QUOTA_EXHAUSTED,
            False,
        ),
        (
            error_reply(
                500, "InternalServerError", "The service is temporarily unable to process your request."
            ),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
        (
            error_reply(503, "ServiceUnavailable", "The service is busy."),
            Code.UNAVAILABLE,
            Reason.UPSTREAM_UNAVAILABLE,
            True,
        ),
    ],
    ids=[
        "400",
        "400-context-length",
        "400-content-filter",
        "400-content-filter-live-spelling",
        "401",
        "403",
        "404",
        "408",
        "409",
        "413",
        "422",
        "429",
        "429-quota",
        "500",
        "503",
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_status_mapping(azure_provider, azure_fake, reply, code, reason, retryable, stream):
    azure_fake.enqueue(reply)
    error = await failure(azure_provider, stream=stream)
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata["provider"] == "azure"
    assert error.metadata["model"] == "gpt-4o"
    assert error.metadata["deployment"] == "gpt-4o"
    assert error.metadata["upstream_status"] == str(reply.status)
    assert error.metadata["upstream_request_id"]
    assert error.metadata["upstream_region"] == "Sweden Central"


async def test_content_filter_names_the_categories(azure_provider, azure_fake):
    for observed in (False, True):
        azure_fake.enqueue(content_filter_reply(observed=observed))
        error = await failure(azure_provider)
        assert error.metadata["filtered_categories"] == "violence"
        assert error.metadata["upstream_code"] == "content_filter"
        assert "content management policy" in error.message


async def test_429_retry_after_headers(azure_provider, azure_fake):
    azure_fake.enqueue(rate_limited_reply(seconds=6))
    error = await failure(azure_provider)
    assert error.retry_after == 6.0
    assert error.quota_violations[0].subject == "azure/gpt-4o"
    # retry-after-ms is the more precise of the two and wins
    azure_fake.enqueue(rate_limited_reply(seconds=6, headers={"retry-after-ms": "1500"}))
    assert (await failure(azure_provider)).retry_after == 1.5


async def test_429_without_headers_uses_the_delay_in_the_message(azure_provider, azure_fake):
    reply = rate_limited_reply(seconds=9)
    reply.headers = {k: v for k, v in reply.headers.items() if not k.startswith("retry-after")}
    azure_fake.enqueue(reply)
    assert (await failure(azure_provider)).retry_after == 9.0


async def test_503_retry_after(azure_provider, azure_fake):
    azure_fake.enqueue(error_reply(503, "ServiceUnavailable", "Busy.", {"retry-after": "4"}))
    assert (await failure(azure_provider)).retry_after == 4.0


async def test_unknown_deployment_is_not_found(azure_provider, azure_fake):
    error = await failure(azure_provider, "no-such-deployment")
    assert (error.code, error.reason) == (Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND)
    assert error.metadata["upstream_code"] == "DeploymentNotFound"
    assert error.metadata["deployment"] == "no-such-deployment"


async def test_apim_request_id_is_the_upstream_request_id(azure_provider, azure_fake):
    azure_fake.enqueue(error_reply(500, "InternalServerError", "x", {"apim-request-id": "6a1d3e4c-apim"}))
    assert (await failure(azure_provider)).metadata["upstream_request_id"] == "6a1d3e4c-apim"


async def test_rejected_key_gives_a_fixed_message_without_the_key(azure_fake):
    settings = azure_settings(azure_fake.base_url).model_copy(
        update={"api_key": SecretStr("ffffffffffffffffffffffffffffffff")}
    )
    provider = AzureOpenAIProvider("azure", settings)
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()
    assert (error.code, error.reason) == (Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED)
    assert error.message == (
        "azure rejected the gateway's credentials (with HTTP 401); "
        "check its api_key and options.auth settings"
    )
    assert "ffff" not in str(error.metadata)


async def test_secrets_in_upstream_messages_are_redacted(azure_provider, azure_fake):
    azure_fake.enqueue(
        error_reply(400, "BadRequest", f"Key {AZURE_KEY} and Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc were wrong")
    )
    error = await failure(azure_provider)
    assert AZURE_KEY not in error.message
    assert "eyJ" not in error.message
    assert error.message.count("[redacted]") == 2


async def test_long_upstream_messages_are_capped(azure_provider, azure_fake):
    azure_fake.enqueue(error_reply(400, "BadRequest", "x" * 5000))
    assert len((await failure(azure_provider)).message) < 700


async def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens there
    provider = AzureOpenAIProvider("azure", azure_settings(f"http://127.0.0.1:{port}/openai"))
    try:
        for stream in (False, True):
            error = await failure(provider, stream=stream)
            assert (error.code, error.reason, error.retryable) == (
                Code.UNAVAILABLE,
                Reason.UPSTREAM_UNAVAILABLE,
                True,
            )
    finally:
        await provider.aclose()
