"""In-process limiter backend: the default for one replica (see backends/base.py for the contract).

Everything runs on the event loop without awaiting in the middle of a check, so each `admit` and
`settle` is atomic without locks. Expired windows, counters and outstanding reservations are swept every
`_SWEEP_EVERY` operations, so memory stays bounded by the live subjects.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from homa_server.policy.backends.base import RESERVATION_TTL_S, CounterCheck, Exceeded, RateCheck

_SWEEP_EVERY = 1024


class MemoryBackend:
    """Sliding-window logs and expiring counters in dictionaries."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._logs: dict[str, tuple[deque[float], float]] = {}  # key -> (admission times, window)
        self._counters: dict[str, list[float]] = {}  # key -> [value, expires at]
        self._outstanding: dict[str, float] = {}  # token -> forgotten at (not settled by then)
        self._ops = 0

    def _log(self, check: RateCheck, now: float) -> deque[float]:
        entry = self._logs.get(check.key)
        if entry is None:
            entry = self._logs[check.key] = (deque(), check.window_s)
        log = entry[0]
        horizon = now - check.window_s
        while log and log[0] <= horizon:
            log.popleft()
        return log

    def _counter(self, key: str, now: float) -> list[float] | None:
        counter = self._counters.get(key)
        if counter is not None and counter[1] <= now:
            del self._counters[key]
            return None
        return counter

    async def admit(
        self, token: str, rates: Sequence[RateCheck], counters: Sequence[CounterCheck]
    ) -> list[Exceeded]:
        """See `LimitBackend.admit`."""
        now = self._clock()
        self._maybe_sweep(now)
        exceeded: list[Exceeded] = []
        logs = []
        for check in rates:
            log = self._log(check, now)
            logs.append(log)
            if len(log) >= check.limit:
                # The entry whose expiry brings the count below the limit.
                freeing = log[len(log) - check.limit]
                exceeded.append(Exceeded(check.subject, check.description, freeing + check.window_s - now))
        for c in counters:
            counter = self._counter(c.key, now)
            used = counter[0] if counter is not None else 0
            if used + c.amount > c.limit:
                retry = None if c.amount > c.limit else c.reset_in_s
                exceeded.append(Exceeded(c.subject, c.description, retry))
        if exceeded:
            return exceeded
        for log in logs:
            log.append(now)
        for c in counters:
            counter = self._counter(c.key, now)
            if counter is None:
                self._counters[c.key] = [c.amount, now + c.ttl_s]
            else:
                counter[0] += c.amount
        if counters:
            self._outstanding[token] = now + RESERVATION_TTL_S
        return []

    async def settle(self, token: str, deltas: Sequence[tuple[str, int]]) -> bool:
        """See `LimitBackend.settle`."""
        now = self._clock()
        forget_at = self._outstanding.pop(token, None)
        if forget_at is None or forget_at <= now:
            return False
        for key, delta in deltas:
            counter = self._counter(key, now)
            if counter is not None and delta:
                counter[0] = max(0, counter[0] + delta)
        return True

    def _maybe_sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % _SWEEP_EVERY:
            return
        for key in [k for k, (log, window) in self._logs.items() if not log or log[-1] <= now - window]:
            del self._logs[key]
        for key in [k for k, (_, expires) in self._counters.items() if expires <= now]:
            del self._counters[key]
        for token in [t for t, forget_at in self._outstanding.items() if forget_at <= now]:
            del self._outstanding[token]

    async def aclose(self) -> None:
        """Nothing to release."""
