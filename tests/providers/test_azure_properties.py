"""Property tests: every valid homa request becomes a body the Azure spec of the api-version accepts
(undeclared fields included), and every invalid one fails with INVALID_ARGUMENT before any call."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.azure_openai.api_versions import surface_for
from homa_server.providers.azure_openai.chat_request import AzureChatBuilder
from tests.providers.azure_spec import validate_azure_request
from tests.strategies import invalid_chat_requests, valid_chat_requests

VERSIONS = ("2024-10-21", "2025-04-01-preview")
BUILDERS = {
    version: AzureChatBuilder(surface_for(version), version, "max_completion_tokens") for version in VERSIONS
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_chat_requests(model="azure/gpt-4o"), st.sampled_from(VERSIONS), st.booleans())
def test_valid_requests_translate_to_spec_valid_bodies(
    request: chat_pb2.CompleteRequest, api_version: str, stream: bool
) -> None:
    body = BUILDERS[api_version].build(request, stream=stream)
    problems = validate_azure_request(
        "POST",
        "/openai/deployments/gpt-4o/chat/completions",
        {"api-version": api_version},
        orjson.dumps(body),
        {"api-key": "k", "content-type": "application/json"},
    )
    assert problems == []


@settings(max_examples=60, deadline=None)
@given(invalid_chat_requests(model="azure/gpt-4o"), st.sampled_from(VERSIONS), st.booleans())
def test_invalid_requests_fail_before_any_call(
    request: chat_pb2.CompleteRequest, api_version: str, stream: bool
) -> None:
    # The builder runs before the HTTP call in both complete_chat and stream_chat, so raising here
    # means nothing was sent (test_azure_request checks the same through the fake).
    with pytest.raises(GatewayError) as caught:
        BUILDERS[api_version].build(request, stream=stream)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.field_violations
