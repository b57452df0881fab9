"""Every documented Bedrock error (status, `x-amzn-ErrorType`, `{"message"}` body) -> GatewayError,
through the fake for HTTP errors and directly for the mapping's edge cases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from botocore.parsers import RestJSONParser

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.bedrock.error_mapping import error_from_exception, error_from_response
from tests.providers.bedrock_spec import runtime_model
from tests.providers.conftest import call_ctx, chat_request, collect, message
from tests.providers.fakes.bedrock_upstream import (
    ACCESS_KEY,
    MODEL,
    MODEL_BEHAVIOURS,
    FakeBedrock,
    Reply,
    bedrock_settings,
    checked_fake,
    error_reply,
    running_fake,
    throttling_reply,
)

SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", bedrock_settings(fake))
    yield adapter
    await adapter.aclose()


# (status, x-amzn-ErrorType, message) -> (code, reason, retryable)
CASES = [
    (
        400,
        "ValidationException",
        "1 validation error detected",
        Code.INVALID_ARGUMENT,
        Reason.UPSTREAM_INVALID_REQUEST,
        False,
    ),
    (
        400,
        "ValidationException",
        "Input is too long for requested model.",
        Code.INVALID_ARGUMENT,
        Reason.CONTEXT_LENGTH_EXCEEDED,
        False,
    ),
    (
        400,
        "ValidationException",
        "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum",
        Code.INVALID_ARGUMENT,
        Reason.CONTEXT_LENGTH_EXCEEDED,
        False,
    ),
    (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
        Code.INTERNAL,
        Reason.UPSTREAM_CREDENTIALS_REJECTED,
        False,
    ),
    (404, "ResourceNotFoundException", "Model not found.", Code.NOT_FOUND, Reason.UPSTREAM_NOT_FOUND, False),
    (
        408,
        "ModelTimeoutException",
        "Model has timed out in processing the request.",
        Code.DEADLINE_EXCEEDED,
        Reason.UPSTREAM_TIMEOUT,
        True,
    ),
    (
        424,
        "ModelErrorException",
        "The model returned an error.",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    ),
    (
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        True,
    ),
    (
        429,
        "ModelNotReadyException",
        "Model is not ready to serve inference requests.",
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_RATE_LIMITED,
        True,
    ),
    (
        500,
        "InternalServerException",
        "Internal server error.",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    ),
    (
        503,
        "ServiceUnavailableException",
        "Service unavailable.",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_UNAVAILABLE,
        True,
    ),
]


@pytest.mark.parametrize(("status", "error_type", "text", "code", "reason", "retryable"), CASES)
async def test_http_errors(provider, fake, status, error_type, text, code, reason, retryable):
    fake.enqueue(error_reply(status, error_type, text))
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
    assert error.metadata == {
        "provider": "bedrock",
        "model": MODEL,
        "upstream_status": str(status),
        "upstream_request_id": "00000001-0000-4000-8000-000000000001",
        "upstream_type": error_type,
    }


@pytest.mark.parametrize(("status", "error_type", "text", "code", "reason", "retryable"), CASES)
def test_the_fake_errors_parse_like_botocore_parses_them(status, error_type, text, code, reason, retryable):
    """botocore's own parser reads the same error code from the fake's bytes as the adapter does."""
    reply = error_reply(status, error_type, text)
    headers = {"x-amzn-errortype": reply.headers["x-amzn-errortype"], "x-amzn-requestid": "req-1"}
    parsed = RestJSONParser().parse(
        {"status_code": status, "headers": headers, "body": reply.body},
        runtime_model().operation_model("Converse").output_shape,
    )
    assert parsed["Error"]["Code"] == error_type
    assert parsed["Error"]["Message"] == text


async def test_service_quota_exceeded_is_not_retryable(provider, fake):
    fake.enqueue(
        error_reply(
            400, "ServiceQuotaExceededException", "Your request exceeds the service quota.", validate=False
        )
    )  # InvokeModel declares it; Converse can surface it too
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    error = caught.value
    assert (error.code, error.reason, error.retryable) == (
        Code.RESOURCE_EXHAUSTED,
        Reason.UPSTREAM_QUOTA_EXHAUSTED,
        False,
    )
    assert error.quota_violations[0].subject == f"bedrock/{MODEL}"


async def test_throttling_gets_the_default_retry_delay_and_a_quota_violation(provider, fake):
    fake.enqueue(throttling_reply())
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after == 1.0
    assert caught.value.quota_violations[0].description == "ThrottlingException"


async def test_throttling_delay_is_configurable(fake):
    adapter = BedrockProvider("bedrock", bedrock_settings(fake, options={"throttling_retry_after_s": 4.5}))
    try:
        fake.enqueue(throttling_reply())
        with pytest.raises(GatewayError) as caught:
            await adapter.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await adapter.aclose()
    assert caught.value.retry_after == 4.5


async def test_a_retry_after_header_wins_over_the_default(provider, fake):
    reply = throttling_reply()
    reply.headers["retry-after"] = "7"
    fake.enqueue(reply)
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.retry_after == 7.0


async def test_credential_errors_use_a_fixed_message(provider, fake):
    leaky = f"The security token for {ACCESS_KEY} is invalid. Signature=abcdef0123"
    fake.enqueue(error_reply(403, "UnrecognizedClientException", leaky, validate=False))
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert ACCESS_KEY not in caught.value.message
    assert "Signature" not in caught.value.message


def test_other_messages_are_scrubbed_and_capped():
    body = b'{"message": "Key AKIAABCDEFGHIJKLMNOP or Bearer ABSKabc123 failed ' + b"x" * 600 + b'"}'
    error = error_from_response(
        "bedrock",
        MODEL,
        400,
        httpx.Headers({"x-amzn-errortype": "ValidationException" + SUFFIX}),
        body,
        throttle_delay=1.0,
    )
    assert "AKIAABCDEFGHIJKLMNOP" not in error.message
    assert "ABSKabc123" not in error.message
    assert error.message.endswith("...")


async def test_the_fake_rejects_a_bad_signature_as_aws_does(fake):
    """Canary: the signature check really runs (a wrong secret is refused with 403)."""
    settings = bedrock_settings(
        fake, auth="none", options={"access_key_id": ACCESS_KEY, "secret_access_key": "wrong"}
    )
    adapter = BedrockProvider("bedrock", settings)
    try:
        with pytest.raises(GatewayError) as caught:
            await adapter.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await adapter.aclose()
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert caught.value.metadata["upstream_type"] == "InvalidSignatureException"
    assert "does not match" in fake.auth_errors[0]
    fake.auth_errors.clear()  # expected here; the fixture would fail the test otherwise


async def test_unknown_bearer_key_is_refused(fake):
    adapter = BedrockProvider("bedrock", bedrock_settings(fake, auth="none", api_key="ABSKnot-a-real-key"))
    try:
        with pytest.raises(GatewayError) as caught:
            await collect(adapter.stream_chat(chat_request(), call_ctx(MODEL)))
    finally:
        await adapter.aclose()
    assert caught.value.reason == Reason.UPSTREAM_CREDENTIALS_REJECTED
    assert fake.auth_errors == ["unknown bearer key"]
    fake.auth_errors.clear()


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("fake-throttle", Reason.UPSTREAM_RATE_LIMITED),
        ("fake-500", Reason.UPSTREAM_UNAVAILABLE),
        ("fake-403", Reason.UPSTREAM_CREDENTIALS_REJECTED),
    ],
)
async def test_model_behaviours_for_other_processes(provider, fake, behaviour, reason):
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(behaviour))
    assert caught.value.reason == reason
    assert behaviour in MODEL_BEHAVIOURS


async def test_count_tokens_errors_are_mapped(provider, fake):
    fake.enqueue(
        error_reply(400, "ValidationException", "The provided model doesn't support counting tokens.")
    )
    request = chat_pb2.CountTokensRequest(messages=[message(3, "x")])
    with pytest.raises(GatewayError) as caught:
        await provider.count_tokens(request, call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_INVALID_REQUEST


async def test_error_without_type_header_falls_back_to_the_status(provider, fake):
    fake.enqueue(
        Reply(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html", validate=False)
    )
    with pytest.raises(GatewayError) as caught:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
    assert "upstream_type" not in caught.value.metadata


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}',
            "ValidationException",
        ),
        (b'{"code": "ThrottlingException", "Message": "slow down"}', "ThrottlingException"),
    ],
)
def test_error_type_from_the_body(body, expected):
    error = error_from_response("bedrock", MODEL, 400, httpx.Headers({}), body, throttle_delay=1.0)
    assert error.metadata["upstream_type"] == expected


@pytest.mark.parametrize(
    ("exception", "code", "reason"),
    [
        ("throttlingException", Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED),
        ("modelStreamErrorException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("validationException", Code.INVALID_ARGUMENT, Reason.UPSTREAM_INVALID_REQUEST),
        ("internalServerException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("serviceUnavailableException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        ("someNewException", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
    ],
)
def test_stream_exception_types(exception, code, reason):
    error = error_from_exception("bedrock", MODEL, exception, "boom", request_id="r1", throttle_delay=2.0)
    assert (error.code, error.reason) == (code, reason)
    assert error.retry_after == (2.0 if reason == Reason.UPSTREAM_RATE_LIMITED else None)


def test_stream_validation_exception_about_context_length():
    error = error_from_exception(
        "bedrock",
        MODEL,
        "validationException",
        "Input is too long for requested model.",
        request_id="",
        throttle_delay=1.0,
    )
    assert error.reason == Reason.CONTEXT_LENGTH_EXCEEDED


async def test_connection_refused_is_unavailable(fake):
    settings = bedrock_settings(fake, base_url="http://127.0.0.1:9")
    adapter = BedrockProvider("bedrock", settings)
    try:
        with pytest.raises(GatewayError) as caught:
            await adapter.complete_chat(chat_request(), call_ctx(MODEL))
        assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
        with pytest.raises(GatewayError) as streamed:
            await collect(adapter.stream_chat(chat_request(), call_ctx(MODEL)))
        assert streamed.value.reason == Reason.UPSTREAM_UNAVAILABLE
    finally:
        await adapter.aclose()
