"""Provider-independent validation agrees with the shared request strategies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError
from homa_server.validation.chat import validate_chat_request
from tests.strategies import invalid_chat_requests, valid_chat_requests


@settings(max_examples=150, deadline=None)
@given(valid_chat_requests())
def test_valid_requests_pass(request: chat_pb2.CompleteRequest) -> None:
    validate_chat_request(request)


@settings(max_examples=150, deadline=None)
@given(invalid_chat_requests())
def test_invalid_requests_fail_with_field_violations(request: chat_pb2.CompleteRequest) -> None:
    with pytest.raises(GatewayError) as info:
        validate_chat_request(request)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.field_violations
