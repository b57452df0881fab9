"""Property tests: every valid homa request becomes a Converse body that botocore's service model
accepts; every invalid one is INVALID_ARGUMENT before any upstream call."""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.bedrock.chat_request import build_converse_body, build_count_tokens_body
from homa_server.settings import ProviderSettings
from tests.providers.bedrock_spec import runtime_model, validate_request
from tests.providers.conftest import call_ctx, collect
from tests.providers.fakes.bedrock_upstream import API_KEY, MODEL, REGION
from tests.strategies import invalid_chat_requests, valid_chat_requests

PROPERTY = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _service_model() -> None:
    runtime_model()  # load once, outside the timed examples


@PROPERTY
@given(valid_chat_requests(model="bedrock/" + MODEL))
def test_every_valid_request_is_a_spec_valid_converse_body(request: chat_pb2.CompleteRequest):
    body = orjson.loads(orjson.dumps(build_converse_body(request)))
    assert validate_request("converse", MODEL, body) == []
    assert validate_request("converse-stream", MODEL, body) == []
    count = chat_pb2.CountTokensRequest(model=request.model, messages=request.messages, tools=request.tools)
    assert (
        validate_request("count-tokens", MODEL, orjson.loads(orjson.dumps(build_count_tokens_body(count))))
        == []
    )


class _NoUpstream(httpx.AsyncBaseTransport):
    """A transport that records every request it is asked to send (there must be none)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(500)


@PROPERTY
@given(invalid_chat_requests(model="bedrock/" + MODEL))
async def test_every_invalid_request_is_rejected_before_any_upstream_call(request: chat_pb2.CompleteRequest):
    adapter = BedrockProvider(
        "bedrock",
        ProviderSettings(kind="bedrock", api_key=API_KEY, options={"region": REGION}),  # type: ignore[arg-type]
    )
    transport = _NoUpstream()
    await adapter.aclose()
    adapter._client = httpx.AsyncClient(transport=transport)  # the only way out of the adapter
    try:
        for call in (
            lambda: adapter.complete_chat(request, call_ctx(MODEL)),
            lambda: collect(adapter.stream_chat(request, call_ctx(MODEL))),
        ):
            with pytest.raises(GatewayError) as caught:
                await call()
            assert (caught.value.code, caught.value.reason) == (Code.INVALID_ARGUMENT, Reason.INVALID_REQUEST)
            assert caught.value.field_violations
    finally:
        await adapter.aclose()
    assert transport.sent == []
