"""Deployment order per strategy: weights, in-flight counts, latency."""

from __future__ import annotations

import random
from collections import Counter

from homa_server.providers.mock import MockProvider
from homa_server.routing.balancer import Balancer
from homa_server.routing.routes import Deployment, Route
from homa_server.settings import ProviderSettings, RouteStrategy

MOCK = MockProvider("mock", ProviderSettings(kind="mock"))


def _route(strategy: RouteStrategy, *weights: float) -> Route:
    deployments = tuple(Deployment(MOCK, f"m{i}", weight=w) for i, w in enumerate(weights))
    return Route("alias", deployments, strategy)


def test_ordered_keeps_settings_order() -> None:
    route = _route("ordered", 1, 5, 9)
    assert [d.model for d in Balancer().order(route)] == ["m0", "m1", "m2"]


def test_weighted_first_choice_follows_the_weights() -> None:
    balancer = Balancer(random.Random(42))
    route = _route("weighted", 1, 3, 6)
    firsts = Counter(balancer.order(route)[0].model for _ in range(10_000))
    assert abs(firsts["m0"] / 10_000 - 0.1) < 0.02
    assert abs(firsts["m1"] / 10_000 - 0.3) < 0.02
    assert abs(firsts["m2"] / 10_000 - 0.6) < 0.02


def test_weighted_order_lists_every_deployment_once() -> None:
    balancer = Balancer(random.Random(1))
    route = _route("weighted", 1, 1, 1, 1)
    for _ in range(100):
        assert sorted(d.model for d in balancer.order(route)) == ["m0", "m1", "m2", "m3"]


def test_least_inflight_prefers_idle_deployments() -> None:
    balancer = Balancer()
    route = _route("least_inflight", 1, 1, 1)
    balancer.stats("mock/m0").inflight = 3
    balancer.stats("mock/m1").inflight = 1
    assert [d.model for d in balancer.order(route)] == ["m2", "m1", "m0"]


def test_lowest_latency_measures_unknown_deployments_first() -> None:
    balancer = Balancer()
    route = _route("lowest_latency", 1, 1, 1)
    balancer.stats("mock/m0").observe_latency(0.5)
    balancer.stats("mock/m1").observe_latency(0.1)
    assert [d.model for d in balancer.order(route)] == ["m2", "m1", "m0"]
    balancer.stats("mock/m2").observe_latency(0.3)
    assert [d.model for d in balancer.order(route)] == ["m1", "m2", "m0"]


def test_latency_is_an_exponential_average() -> None:
    balancer = Balancer()
    stats = balancer.stats("mock/x")
    stats.observe_latency(1.0)
    for _ in range(30):
        stats.observe_latency(0.1)
    assert stats.latency_s is not None
    assert 0.1 <= stats.latency_s < 0.11
