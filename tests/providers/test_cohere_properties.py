"""Property tests: every valid homa request becomes a spec-valid Cohere body; every invalid one is
rejected with INVALID_ARGUMENT before anything is sent (the provider under test points at a closed
port, so an attempted call would surface as UPSTREAM_UNAVAILABLE instead).

The translated body is checked against the (repaired, closed) spec directly, without HTTP. One
valid homa construct has no Cohere form: a named tool choice (MODE_NAMED). The strategy draws it
sometimes; the adapter must then reject it naming `tool_choice.mode`, and the same request with
the choice relaxed to REQUIRED (the documented workaround) must translate to a valid body.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError
from homa_server.providers.base import CallContext
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.cohere.chat_request import build_chat_body
from tests.providers.cohere_spec import cohere_api, validate_cohere_request
from tests.providers.conftest import collect
from tests.providers.fakes.cohere_upstream import COHERE_TEST_KEY, cohere_settings
from tests.strategies import invalid_chat_requests, valid_chat_requests

AUTH = {"Authorization": f"Bearer {COHERE_TEST_KEY}"}
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def setup_module() -> None:
    cohere_api()  # load the spec once, outside the timed examples


def _problems(request: chat_pb2.CompleteRequest, *, stream: bool) -> list[str]:
    body = build_chat_body(request, "command-a-03-2025", stream=stream)
    return validate_cohere_request("POST", "/v2/chat", orjson.dumps(body), AUTH)


@PROPERTY
@given(valid_chat_requests())
def test_valid_requests_translate_to_spec_valid_bodies(request):
    for stream in (False, True):
        if request.tool_choice.mode == content_pb2.ToolChoice.MODE_NAMED:
            with pytest.raises(GatewayError) as caught:
                build_chat_body(request, "command-a-03-2025", stream=stream)
            assert caught.value.code == Code.INVALID_ARGUMENT
            assert [v.field for v in caught.value.field_violations] == ["tool_choice.mode"]
            relaxed = chat_pb2.CompleteRequest()
            relaxed.CopyFrom(request)
            relaxed.tool_choice.mode = content_pb2.ToolChoice.MODE_REQUIRED
            relaxed.tool_choice.name = ""
            assert _problems(relaxed, stream=stream) == []
        else:
            assert _problems(request, stream=stream) == []


async def _both_calls(provider: CohereProvider, request: chat_pb2.CompleteRequest) -> list[GatewayError]:
    """Errors of a unary and a streamed call of `request`."""
    errors = []
    ctx = CallContext(model="command-a-03-2025")
    for call in (
        lambda: provider.complete_chat(request, ctx),
        lambda: collect(provider.stream_chat(request, ctx)),
    ):
        try:
            await call()
        except GatewayError as error:
            errors.append(error)
    return errors


@pytest.fixture(scope="module")
def offline_provider() -> Iterator[tuple[asyncio.Runner, CohereProvider]]:
    """A provider whose upstream port is closed (any attempt to send fails as UPSTREAM_UNAVAILABLE,
    not INVALID_ARGUMENT), with one event loop for all examples (a client per example would cost
    more than the examples)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with asyncio.Runner() as runner:

        async def build() -> CohereProvider:
            return CohereProvider("cohere", cohere_settings(f"http://127.0.0.1:{port}"))

        provider = runner.run(build())
        try:
            yield runner, provider
        finally:
            runner.run(provider.aclose())


@PROPERTY
@given(request=invalid_chat_requests())
def test_invalid_requests_are_rejected_before_any_call(request, offline_provider):
    runner, provider = offline_provider
    errors = runner.run(_both_calls(provider, request))
    assert len(errors) == 2
    for error in errors:
        assert error.code == Code.INVALID_ARGUMENT
        assert error.field_violations
