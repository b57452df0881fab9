"""Candidates of one call: which deployments may serve it, in which order, with which time budget.

Contract (`plan_call`):
    * Order: the requested route's deployments (ordered by its strategy), then each
      `options.fallback_models` entry (alias or model, its deployments ordered likewise), then the
      route's own `fallbacks`. A deployment appears once (first place wins).
    * Skipped: deployments of a route whose model lacks a capability the request needs
      (`routing/routes.py`), deployments the caller's key may not use (`Principal.may_use_model`
      with the requested name, the provider-side model and `provider/model`), providers without chat.
    * No candidate left: PERMISSION_DENIED (generic) when the key's model restriction removed one,
      else FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED naming what was needed.
    * An unknown model in `options.fallback_models` is the caller's error (NOT_FOUND, as for `model`);
      an unknown one in a route's settings `fallbacks` is skipped (operator configuration).
    * Budget: the call's deadline, shortened by `options.timeout` and the route's `timeout_s`; the
      time to first token of each streamed attempt is the smaller of `options.first_token_timeout`
      and the route's `first_token_timeout_s`.
    * Priority: `options.priority`, NORMAL when unspecified. API keys carry no default priority yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.auth.principal import Principal, permission_denied
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import current_call
from homa_server.providers.base import ChatProvider
from homa_server.routing.admission import effective_priority
from homa_server.routing.balancer import Balancer
from homa_server.routing.routes import Deployment, Route, RouteTable, needs_of, supports


def _smallest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass(frozen=True, slots=True)
class Budget:
    """Time limits of one call: an absolute monotonic deadline and a per-attempt first-token limit."""

    deadline: float | None
    first_token_s: float | None
    clock: Callable[[], float] = time.monotonic

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.clock())


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the attempt loop needs to know about one call."""

    route: Route
    candidates: tuple[Deployment, ...]
    priority: int
    budget: Budget


def _duration(request: chat_pb2.CompleteRequest, name: str) -> float | None:
    if not request.options.HasField(name):  # type: ignore[arg-type]
        return None
    seconds: float = getattr(request.options, name).ToTimedelta().total_seconds()
    return seconds if seconds > 0 else None


class _Collector:
    def __init__(self, request: chat_pb2.CompleteRequest, principal: Principal | None, balancer: Balancer):
        self.request = request
        self.principal = principal
        self.balancer = balancer
        self._needs: frozenset[str] | None = None  # computed for the first filtered route only
        self.found: list[Deployment] = []
        self.seen: set[str] = set()
        self.denied = False
        self.lacking: list[str] = []
        self.no_chat: list[str] = []

    @property
    def needs(self) -> frozenset[str]:
        if self._needs is None:
            self._needs = needs_of(self.request)
        return self._needs

    def add(self, route: Route, requested: str, chat_capable: Callable[[Deployment], bool]) -> None:
        for deployment in self.balancer.order(route):
            key = deployment.key
            if key in self.seen:
                continue
            if self.principal is not None and not self.principal.may_use_model(
                requested, deployment.model, key
            ):
                self.denied = True
                continue
            if route.filtered and not supports(deployment, self.needs):
                self.lacking.append(key)
                continue
            if not chat_capable(deployment):
                self.no_chat.append(deployment.provider.name)
                continue
            self.seen.add(key)
            self.found.append(deployment)

    def nothing_left(self) -> GatewayError:
        if self.denied:
            return permission_denied()
        if self.no_chat and not self.lacking:
            name = self.no_chat[0]
            return GatewayError(
                f"provider {name!r} does not offer chat",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": name},
            )
        needed = ", ".join(sorted(self.needs))
        return GatewayError(
            f"no deployment of {self.request.model!r} supports what the request needs ({needed})",
            Code.FAILED_PRECONDITION,
            Reason.CAPABILITY_NOT_SUPPORTED,
            metadata={"model": self.request.model, "needs": needed},
        )


class CandidatePlanner:
    """Builds `Plan`s from the route table; see the module docstring.

    Args:
        table: aliases and resolved models.
        balancer: deployment order within a route.
        clock: monotonic seconds.
    """

    def __init__(
        self, table: RouteTable, balancer: Balancer, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table
        self._balancer = balancer
        self._clock = clock
        self._chat_capable: dict[str, bool] = {}

    def _is_chat(self, deployment: Deployment) -> bool:
        # isinstance() against a runtime-checkable Protocol inspects every member: decide once.
        name = deployment.provider.name
        capable = self._chat_capable.get(name)
        if capable is None:
            capable = self._chat_capable[name] = isinstance(deployment.provider, ChatProvider)
        return capable

    def plan(self, request: chat_pb2.CompleteRequest, remaining: float | None) -> Plan:
        """The candidates, priority and budget of `request` (already validated).

        Args:
            request: the chat request.
            remaining: seconds before the caller's deadline, or None.

        Raises:
            GatewayError: unknown model (NOT_FOUND), nothing allowed (PERMISSION_DENIED), nothing
                capable (FAILED_PRECONDITION).
        """
        state = current_call.get()
        collector = _Collector(request, state.principal if state is not None else None, self._balancer)
        route = self._table.route(request.model)
        collector.add(route, request.model, self._is_chat)
        for name in request.options.fallback_models:
            collector.add(self._table.route(name), name, self._is_chat)
        for name in route.fallbacks:
            try:
                fallback = self._table.route(name)
            except GatewayError:
                continue
            collector.add(fallback, name, self._is_chat)
        if not collector.found:
            raise collector.nothing_left()
        total = _smallest(remaining, _duration(request, "timeout"), route.timeout_s)
        budget = Budget(
            None if total is None else self._clock() + total,
            _smallest(_duration(request, "first_token_timeout"), route.first_token_timeout_s),
            self._clock,
        )
        return Plan(route, tuple(collector.found), effective_priority(request.options.priority), budget)
