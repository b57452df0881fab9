"""Priority admission: who waits, and who is shed, when a deployment is at its concurrency limit.

Contract:
    * Each deployment (by key) with a limit admits at most `limit` calls at once on this replica.
      Without a limit `acquire` returns at once.
    * Waiters are served HIGH before NORMAL before LOW, first come first served within a priority.
      A freed slot passes straight to the chosen waiter (no barging by newcomers while others wait).
    * A call is shed with RESOURCE_EXHAUSTED / OVERLOADED when:
      - the queue (`max_queue` waiters) is full: the newest waiter of the lowest priority present is
        shed to make room if it ranks below the newcomer, otherwise the newcomer is shed;
      - its wait would pass its deadline, or `max_wait_s` (`low_priority_max_wait_s` for LOW, so
        LOW gives way first under sustained load).
    * Cancelling a waiting call removes it from the queue; a slot granted at that very moment is
      passed on, never lost.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.settings import AdmissionSettings

LOW = chat_pb2.PRIORITY_LOW
NORMAL = chat_pb2.PRIORITY_NORMAL
HIGH = chat_pb2.PRIORITY_HIGH


def effective_priority(requested: int) -> int:
    """The request's priority; unspecified (or unknown) means NORMAL."""
    return requested if requested in (LOW, NORMAL, HIGH) else NORMAL


def overloaded(key: str, priority: int, why: str) -> GatewayError:
    """RESOURCE_EXHAUSTED / OVERLOADED for a shed call."""
    return GatewayError(
        f"deployment {key} is at its concurrency limit: {why}",
        Code.RESOURCE_EXHAUSTED,
        Reason.OVERLOADED,
        retryable=True,
        metadata={
            "deployment": key,
            "priority": chat_pb2.Priority.Name(cast(chat_pb2.Priority.ValueType, priority)),
        },
    )


@dataclass(order=True)
class _Waiter:
    rank: tuple[int, int]  # (-priority, arrival): heap order = who is served first
    future: asyncio.Future[None] = field(compare=False)
    priority: int = field(compare=False)


class _Gate:
    def __init__(self) -> None:
        self.active = 0
        self.waiters: list[_Waiter] = []


class Slot:
    """A granted place on a deployment; `release()` exactly once (idempotent)."""

    def __init__(self, release: Callable[[], None] | None) -> None:
        self._release = release

    def release(self) -> None:
        """Give the place back (to the best waiter, if any)."""
        release, self._release = self._release, None
        if release is not None:
            release()


class Admission:
    """Per-deployment concurrency gates of one process; see the module docstring.

    Args:
        settings: queue size and wait bounds.
        clock: monotonic seconds (for deadlines).
    """

    def __init__(self, settings: AdmissionSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._gates: dict[str, _Gate] = {}
        self._arrivals = itertools.count()

    def waiting(self, key: str) -> int:
        """Calls waiting for deployment `key`."""
        gate = self._gates.get(key)
        return 0 if gate is None else len(gate.waiters)

    def active(self, key: str) -> int:
        """Calls holding a slot of deployment `key`."""
        gate = self._gates.get(key)
        return 0 if gate is None else gate.active

    async def acquire(self, key: str, limit: int | None, priority: int, deadline: float | None) -> Slot:
        """Wait for a slot on deployment `key`.

        Args:
            key: deployment key.
            limit: concurrent calls allowed; None = unlimited.
            priority: chat Priority value (see `effective_priority`).
            deadline: absolute monotonic deadline of the call, or None.

        Raises:
            GatewayError: RESOURCE_EXHAUSTED / OVERLOADED when shed.
            asyncio.CancelledError: the call was cancelled while waiting (nothing is held).
        """
        if limit is None:
            return Slot(None)
        gate = self._gates.setdefault(key, _Gate())
        if gate.active < limit and not gate.waiters:
            gate.active += 1
            return Slot(lambda: self._release(gate))
        wait = self._settings.low_priority_max_wait_s if priority == LOW else self._settings.max_wait_s
        if deadline is not None:
            wait = min(wait, deadline - self._clock())
        if wait <= 0:
            raise overloaded(key, priority, "no time left to wait")
        self._make_room(gate, key, priority)
        waiter = _Waiter(
            (-priority, next(self._arrivals)), asyncio.get_running_loop().create_future(), priority
        )
        heapq.heappush(gate.waiters, waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter.future
        except BaseException as exc:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release(gate)  # granted just as we gave up: pass it on
            if isinstance(exc, TimeoutError):
                raise overloaded(key, priority, "waited too long") from None
            raise
        finally:
            if waiter in gate.waiters:
                gate.waiters.remove(waiter)
                heapq.heapify(gate.waiters)
        return Slot(lambda: self._release(gate))

    def _make_room(self, gate: _Gate, key: str, priority: int) -> None:
        if len(gate.waiters) < self._settings.max_queue:
            return
        if not gate.waiters:
            raise overloaded(key, priority, "no queue")
        victim = max(gate.waiters)  # lowest priority, newest arrival
        if victim.priority >= priority:
            raise overloaded(key, priority, "queue full")
        gate.waiters.remove(victim)
        heapq.heapify(gate.waiters)
        victim.future.set_exception(overloaded(key, victim.priority, "shed for a higher priority call"))

    def _release(self, gate: _Gate) -> None:
        while gate.waiters:
            waiter = heapq.heappop(gate.waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot passes to it; `active` is unchanged
                return
        gate.active -= 1
