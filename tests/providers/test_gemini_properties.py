"""Property tests over the shared homa request strategies (tests/strategies.py).

- Every valid homa request translates to a Gemini body that passes the spec checks (proto,
  discovery document, semantics), for generateContent and for countTokens.
- Every invalid one raises INVALID_ARGUMENT before any upstream call: through a real provider
  pointed at the fake, which must record no request at all.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.gemini import GeminiProvider
from homa_server.providers.gemini.chat_request import build_chat_body, build_count_body
from homa_server.providers.gemini.options import GeminiOptions
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    FakeGemini,
    gemini_ctx,
    gemini_settings,
    gemini_upstream_fixture,
)
from tests.providers.gemini_spec import validate_count_tokens_request, validate_generate_content_request
from tests.strategies import invalid_chat_requests, valid_chat_requests

OPTIONS = GeminiOptions()
PROPERTY_SETTINGS = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@PROPERTY_SETTINGS
@given(homa_request=valid_chat_requests(model="gemini/gemini-2.5-flash"))
def test_valid_requests_translate_to_spec_valid_bodies(homa_request: chat_pb2.CompleteRequest) -> None:
    body = orjson.dumps(build_chat_body(homa_request, OPTIONS))
    assert validate_generate_content_request(body) == []
    count = chat_pb2.CountTokensRequest(
        model=homa_request.model, messages=homa_request.messages, tools=homa_request.tools
    )
    assert validate_count_tokens_request(orjson.dumps(build_count_body(count, "gemini-2.5-flash"))) == []


@pytest.fixture(scope="module")
def runner():
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="module")
def provider(gemini_upstream: FakeGemini, runner: asyncio.Runner):
    built = GeminiProvider("gemini", gemini_settings(gemini_upstream.base_url))
    yield built
    runner.run(built.aclose())


@PROPERTY_SETTINGS
@given(homa_request=invalid_chat_requests(model="gemini/gemini-2.5-flash"))
def test_invalid_requests_fail_before_any_upstream_call(
    homa_request: chat_pb2.CompleteRequest,
    provider: GeminiProvider,
    runner: asyncio.Runner,
    gemini_upstream: FakeGemini,
) -> None:
    before = len(gemini_upstream.requests)
    with pytest.raises(GatewayError) as caught:
        runner.run(provider.complete_chat(homa_request, gemini_ctx()))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_REQUEST
    assert caught.value.field_violations

    async def stream() -> None:
        async for _ in provider.stream_chat(homa_request, gemini_ctx()):
            pass

    with pytest.raises(GatewayError) as streamed:
        runner.run(stream())
    assert streamed.value.code == Code.INVALID_ARGUMENT
    assert len(gemini_upstream.requests) == before
