"""Load balancing: the order in which a route's deployments are tried for one call.

Contract:
    * `ordered`: settings order.
    * `weighted`: a weighted random order without replacement (Efraimidis-Spirakis keys
      `u ** (1 / weight)`), so the first choice follows the weights and the rest are the fallbacks.
    * `least_inflight`: fewest calls in flight on this replica first; ties keep settings order.
    * `lowest_latency`: lowest exponentially-weighted latency first (time to the response or to the
      first streamed event of successful attempts); a deployment not measured yet comes first, so
      every deployment gets measured; ties keep settings order.
    * Statistics are per process (replicas balance on what they see), keyed by deployment key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from homa_server.routing.routes import Deployment, Route

#: Weight of the newest sample in the latency average.
LATENCY_ALPHA = 0.3


@dataclass(slots=True)
class DeploymentStats:
    """What this replica knows about one deployment's load and speed."""

    inflight: int = 0
    latency_s: float | None = None

    def observe_latency(self, seconds: float) -> None:
        """Fold one successful attempt's latency into the average."""
        if self.latency_s is None:
            self.latency_s = seconds
        else:
            self.latency_s += LATENCY_ALPHA * (seconds - self.latency_s)


class Balancer:
    """Orders deployments by a route's strategy; see the module docstring.

    Args:
        rng: randomness for `weighted` (seeded in tests).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - balancing, not secrets
        self._stats: dict[str, DeploymentStats] = {}

    def stats(self, key: str) -> DeploymentStats:
        """The statistics of deployment `key` (created on first use)."""
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = DeploymentStats()
        return found

    def order(self, route: Route, deployments: Sequence[Deployment] | None = None) -> list[Deployment]:
        """`deployments` (default: all of the route's) in the order they should be tried."""
        items = list(route.deployments if deployments is None else deployments)
        if len(items) < 2:
            return items
        strategy = route.strategy
        if strategy == "weighted":
            keyed = [(self._rng.random() ** (1.0 / d.weight), d) for d in items]
            keyed.sort(key=lambda pair: pair[0], reverse=True)
            return [d for _, d in keyed]
        if strategy == "least_inflight":
            return sorted(items, key=lambda d: self.stats(d.key).inflight)
        if strategy == "lowest_latency":
            return sorted(items, key=lambda d: self._latency_rank(d.key))
        return items

    def _latency_rank(self, key: str) -> float:
        latency = self.stats(key).latency_s
        return -1.0 if latency is None else latency
