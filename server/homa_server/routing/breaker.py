"""Circuit breakers, one per deployment (`provider/model`) and replica.

Contract:
    * CLOSED: calls flow. The circuit OPENS after `consecutive_failures` failures in a row, or when
      at least `min_calls` outcomes in the last `window_s` seconds show an error rate of at least
      `error_rate`.
    * OPEN: `acquire()` refuses calls (the attempt loop falls back) until `cooldown_s` has passed.
    * HALF_OPEN (after the cool-down): at most `half_open_probes` calls at a time are let through as
      probes. A probe's success closes the circuit (counters reset); its failure reopens it for
      another cool-down. A probe that ends without an outcome (cancelled) frees its slot.
    * What counts as a failure is decided by the caller (`routing/retry.py:is_deployment_failure`).
    * State is per process: replicas learn on their own (ListProviders says "on this replica").
    * Not thread-safe; used from one event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from homa_server.settings import BreakerSettings


class CircuitState(Enum):
    """Breaker states (mirrors homa.admin.v1.CircuitState)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit(Enum):
    """What `acquire` granted: a normal call or a half-open probe."""

    CALL = "call"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class LastError:
    """The latest failure seen on a deployment (reason and a message without contents)."""

    wall_time: float
    reason: str
    message: str
    http_status: int = 0


class CircuitBreaker:
    """The breaker of one deployment; see the module docstring.

    Args:
        settings: thresholds and timings.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures_in_window = 0
        self._opened_at = 0.0
        self._probes = 0
        self.last_error: LastError | None = None

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit whose cool-down ended reads HALF_OPEN)."""
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._settings.cooldown_s:
            self._state = CircuitState.HALF_OPEN
            self._probes = 0
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._settings.cooldown_s - self._clock())

    def acquire(self) -> Permit | None:
        """Ask to call the deployment; None = refused (open, or every probe slot taken)."""
        if not self._settings.enabled:
            return Permit.CALL
        state = self.state
        if state is CircuitState.CLOSED:
            return Permit.CALL
        if state is CircuitState.HALF_OPEN and self._probes < self._settings.half_open_probes:
            self._probes += 1
            return Permit.PROBE
        return None

    def release(self, permit: Permit) -> None:
        """A granted call ended without an outcome worth recording (cancelled, caller error)."""
        if permit is Permit.PROBE and self._probes > 0:
            self._probes -= 1

    def success(self, permit: Permit) -> None:
        """The call succeeded."""
        self.release(permit)
        self._consecutive = 0
        self._record(False)
        if self._state is CircuitState.HALF_OPEN and permit is Permit.PROBE:
            self._close()

    def failure(self, permit: Permit, error: LastError) -> None:
        """The call failed in a way that counts against the deployment."""
        self.release(permit)
        self.last_error = error
        if not self._settings.enabled:
            return
        self._consecutive += 1
        self._record(True)
        if self._state is CircuitState.HALF_OPEN:
            if permit is Permit.PROBE:
                self._open()
            return
        if self._state is CircuitState.CLOSED and self._tripped():
            self._open()

    def _tripped(self) -> bool:
        s = self._settings
        if self._consecutive >= s.consecutive_failures:
            return True
        calls = len(self._outcomes)
        return calls >= s.min_calls and self._failures_in_window >= s.error_rate * calls

    def _record(self, failed: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, failed))
        self._failures_in_window += failed
        horizon = now - self._settings.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old = self._outcomes.popleft()
            self._failures_in_window -= old

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._probes = 0

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._outcomes.clear()
        self._failures_in_window = 0
        self._probes = 0


class BreakerBoard:
    """The breakers of one process, created on first use, by deployment key (`provider/model`)."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        """The breaker of deployment `key`."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(self._settings, self._clock)
        return breaker

    def of_provider(self, provider: str) -> list[CircuitBreaker]:
        """Breakers of every deployment of provider instance `provider` seen so far."""
        prefix = provider + "/"
        return [b for key, b in self._breakers.items() if key.startswith(prefix)]
