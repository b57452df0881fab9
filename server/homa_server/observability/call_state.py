"""Per-RPC bookkeeping shared by the interceptor and the layers below it, without passing grpc objects.

A `CallState` is created by the interceptor for each RPC and published in a context variable, so the
dispatcher can add upstream time and routing facts that end up in trailing metadata.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homa_server.auth.principal import Principal


@dataclass(slots=True)
class CallState:
    """Facts about one RPC in progress."""

    request_id: str
    method: str
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0
    trailers: dict[str, str] = field(default_factory=dict)
    #: The authenticated caller, set by the interceptor before the handler runs (None on open methods).
    principal: Principal | None = None

    def overhead_ms(self) -> float:
        """Wall time spent in the gateway itself so far (total minus time waiting on upstreams)."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000.0)


current_call: ContextVar[CallState | None] = ContextVar("homa_current_call", default=None)


def add_upstream_time(seconds: float) -> None:
    """Record time spent waiting on a provider for the current RPC (no-op outside an RPC)."""
    state = current_call.get()
    if state is not None:
        state.upstream_seconds += seconds


def set_trailer(key: str, value: str) -> None:
    """Add a trailing-metadata entry for the current RPC (no-op outside an RPC)."""
    state = current_call.get()
    if state is not None:
        state.trailers[key] = value
