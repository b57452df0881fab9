"""Routes and candidate planning: aliases, capability filtering, fallbacks, allowed models, budgets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState, current_call
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.balancer import Balancer
from homa_server.routing.candidates import CandidatePlanner
from homa_server.routing.resolver import ModelResolver
from homa_server.routing.routes import RouteTable, catalog_capabilities, needs_of
from homa_server.settings import load_settings

ROUTES: dict[str, Any] = {
    "smart": {
        "deployments": [
            {"provider": "mock", "model": "echo"},
            {"provider": "mock2", "model": "vision", "capabilities": ["images", "tools"]},
        ],
        "fallbacks": ["backup", "nosuch-model"],
        "timeout_s": 5.0,
        "first_token_timeout_s": 0.5,
    },
    "backup": {"deployments": [{"provider": "mock2", "model": "echo"}]},
}


def _planner(routes: dict[str, Any] = ROUTES) -> CandidatePlanner:
    settings = load_settings(
        overrides={"providers": {"mock": {"kind": "mock"}, "mock2": {"kind": "mock"}}, "routes": routes},
        environ={},
    )
    registry = ProviderRegistry.from_settings(settings)
    table = RouteTable(settings.routes, registry, ModelResolver(registry, settings.default_model))
    return CandidatePlanner(table, Balancer())


def _request(model: str, *parts: content_pb2.Part) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model=model)
    message = request.messages.add(role=content_pb2.ROLE_USER)
    message.parts.add(text="hi")
    message.parts.extend(parts)
    return request


IMAGE = content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/png", data=b"x"))


@pytest.fixture
def as_principal() -> Iterator[Any]:
    tokens = []

    def install(allowed: list[str] | None) -> None:
        principal = Principal(
            subject="s", tenant="t", scopes=frozenset(), method="api_key", allowed_models=allowed
        )
        state = CallState(request_id="r", method="/homa.chat.v1.ChatService/Complete", principal=principal)
        tokens.append(current_call.set(state))

    yield install
    for token in reversed(tokens):
        current_call.reset(token)


def _keys(plan: Any) -> list[str]:
    return [d.key for d in plan.candidates]


def test_needs_of_a_request() -> None:
    request = _request(
        "x", IMAGE, content_pb2.Part(file_uri=content_pb2.FileUri(uri="u", mime_type="audio/wav"))
    )
    request.tools.add(name="f")
    request.response_format.type = content_pb2.ResponseFormat.TYPE_JSON_SCHEMA
    assert needs_of(request) == {"images", "audio", "tools", "json_schema"}
    assert needs_of(_request("x")) == frozenset()


def test_catalog_capabilities() -> None:
    assert catalog_capabilities("openai", "gpt-4o") >= {"images", "tools", "json_schema"}
    assert catalog_capabilities("mock", "tool") == {"tools"}
    assert catalog_capabilities("mock", "echo") == frozenset()  # its catalogue row lists none


def test_alias_then_route_fallbacks_skipping_unknown_ones() -> None:
    plan = _planner().plan(_request("smart"), None)
    assert _keys(plan) == ["mock/echo", "mock2/vision", "mock2/echo"]
    assert plan.route.name == "smart"


def test_request_fallbacks_come_before_route_fallbacks_without_duplicates() -> None:
    request = _request("smart")
    request.options.fallback_models.extend(["mock/tool", "mock/echo"])
    assert _keys(_planner().plan(request, None)) == ["mock/echo", "mock2/vision", "mock/tool", "mock2/echo"]


def test_unknown_request_fallback_is_not_found() -> None:
    request = _request("smart")
    request.options.fallback_models.append("nosuch/model")
    with pytest.raises(GatewayError) as info:
        _planner().plan(request, None)
    assert info.value.code is Code.NOT_FOUND


def test_images_skip_text_only_deployments() -> None:
    assert _keys(_planner().plan(_request("smart", IMAGE), None)) == ["mock2/vision"]


def test_nothing_capable_is_failed_precondition() -> None:
    routes = {"text": {"deployments": [{"provider": "mock", "model": "echo"}]}}
    with pytest.raises(GatewayError) as info:
        _planner(routes).plan(_request("text", IMAGE), None)
    assert info.value.code is Code.FAILED_PRECONDITION
    assert info.value.reason is Reason.CAPABILITY_NOT_SUPPORTED
    assert info.value.metadata["needs"] == "images"


def test_explicit_models_are_not_capability_filtered() -> None:
    assert _keys(_planner().plan(_request("mock/echo", IMAGE), None)) == ["mock/echo"]


def test_allowed_models_filter_candidates(as_principal: Any) -> None:
    as_principal(["mock2/*"])
    assert _keys(_planner().plan(_request("smart"), None)) == ["mock2/vision", "mock2/echo"]


def test_allowed_alias_name_covers_its_deployments(as_principal: Any) -> None:
    as_principal(["smart"])
    assert _keys(_planner().plan(_request("smart"), None)) == ["mock/echo", "mock2/vision"]


def test_nothing_allowed_is_permission_denied(as_principal: Any) -> None:
    as_principal(["other/*"])
    with pytest.raises(GatewayError) as info:
        _planner().plan(_request("smart"), None)
    assert info.value.code is Code.PERMISSION_DENIED


def test_budget_is_the_smallest_of_deadline_option_and_route() -> None:
    planner = _planner()
    now = time.monotonic()
    plan = planner.plan(_request("smart"), None)
    assert plan.budget.deadline is not None
    assert 4.9 < plan.budget.deadline - now < 5.1
    assert plan.budget.first_token_s == 0.5
    request = _request("smart")
    request.options.timeout.FromMilliseconds(1000)
    request.options.first_token_timeout.FromMilliseconds(200)
    plan = planner.plan(request, 3.0)
    assert plan.budget.deadline is not None
    assert 0.9 < plan.budget.deadline - now < 1.1
    assert plan.budget.first_token_s == 0.2
    plan = planner.plan(_request("mock/echo"), 0.25)
    remaining = plan.budget.remaining()
    assert remaining is not None
    assert 0.2 < remaining <= 0.25
    assert planner.plan(_request("mock/echo"), None).budget.deadline is None


def test_priority_from_the_request() -> None:
    request = _request("smart")
    assert _planner().plan(request, None).priority == chat_pb2.PRIORITY_NORMAL
    request.options.priority = chat_pb2.PRIORITY_LOW
    assert _planner().plan(request, None).priority == chat_pb2.PRIORITY_LOW


def test_route_naming_an_unknown_provider_fails_at_start() -> None:
    with pytest.raises(ValueError, match=r"routes\.bad\.deployments"):
        _planner({"bad": {"deployments": [{"provider": "nosuch", "model": "m"}]}})
