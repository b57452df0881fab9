"""Priority admission: ordering of waiters, shedding LOW first, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from homa_server.errors import Code, GatewayError, Reason
from homa_server.routing.admission import HIGH, LOW, NORMAL, Admission, Slot, effective_priority
from homa_server.settings import AdmissionSettings

KEY = "mock/echo"


def _admission(**overrides: object) -> Admission:
    return Admission(AdmissionSettings(**overrides))  # type: ignore[arg-type]


async def _queued(admission: Admission, count: int) -> None:
    """Wait until `count` calls are queued (each waiter enqueues before its first await)."""
    for _ in range(100):
        if admission.waiting(KEY) == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {count} waiters, got {admission.waiting(KEY)}")


def test_unspecified_priority_is_normal() -> None:
    assert effective_priority(0) == NORMAL
    assert effective_priority(LOW) == LOW


async def test_no_limit_admits_at_once() -> None:
    admission = _admission()
    slots = [await admission.acquire(KEY, None, LOW, None) for _ in range(50)]
    assert all(isinstance(s, Slot) for s in slots)


async def test_waiters_are_served_high_then_normal_then_low_fifo_within() -> None:
    admission = _admission()
    holder = await admission.acquire(KEY, 1, NORMAL, None)
    served: list[str] = []

    async def call(name: str, priority: int) -> None:
        slot = await admission.acquire(KEY, 1, priority, None)
        served.append(name)
        slot.release()

    tasks = []
    for name, priority in [
        ("low1", LOW),
        ("normal1", NORMAL),
        ("high1", HIGH),
        ("low2", LOW),
        ("high2", HIGH),
    ]:
        tasks.append(asyncio.create_task(call(name, priority)))
        await _queued(admission, len(tasks))
    holder.release()
    await asyncio.gather(*tasks)
    assert served == ["high1", "high2", "normal1", "low1", "low2"]
    assert admission.active(KEY) == 0


async def test_full_queue_sheds_the_newest_low_for_a_higher_priority() -> None:
    admission = _admission(max_queue=2)
    holder = await admission.acquire(KEY, 1, NORMAL, None)
    low_old = asyncio.create_task(admission.acquire(KEY, 1, LOW, None))
    await _queued(admission, 1)
    low_new = asyncio.create_task(admission.acquire(KEY, 1, LOW, None))
    await _queued(admission, 2)
    high = asyncio.create_task(admission.acquire(KEY, 1, HIGH, None))
    await _queued(admission, 2)
    with pytest.raises(GatewayError) as info:
        await low_new
    assert info.value.code is Code.RESOURCE_EXHAUSTED
    assert info.value.reason is Reason.OVERLOADED
    assert info.value.metadata["priority"] == "PRIORITY_LOW"
    holder.release()
    (await high).release()
    (await low_old).release()


async def test_full_queue_sheds_the_newcomer_when_it_ranks_lowest() -> None:
    admission = _admission(max_queue=1)
    holder = await admission.acquire(KEY, 1, NORMAL, None)
    waiter = asyncio.create_task(admission.acquire(KEY, 1, NORMAL, None))
    await _queued(admission, 1)
    with pytest.raises(GatewayError) as info:
        await admission.acquire(KEY, 1, LOW, None)
    assert info.value.reason is Reason.OVERLOADED
    holder.release()
    (await waiter).release()


async def test_low_priority_gives_up_first() -> None:
    admission = _admission(max_wait_s=5.0, low_priority_max_wait_s=0.02)
    holder = await admission.acquire(KEY, 1, NORMAL, None)
    started = time.monotonic()
    with pytest.raises(GatewayError) as info:
        await admission.acquire(KEY, 1, LOW, None)
    assert info.value.reason is Reason.OVERLOADED
    assert time.monotonic() - started < 1.0
    normal = asyncio.create_task(admission.acquire(KEY, 1, NORMAL, None))
    await _queued(admission, 1)
    holder.release()
    (await normal).release()


async def test_a_wait_never_passes_the_deadline() -> None:
    admission = _admission(max_wait_s=5.0)
    holder = await admission.acquire(KEY, 1, HIGH, None)
    with pytest.raises(GatewayError) as info:
        await admission.acquire(KEY, 1, HIGH, time.monotonic() - 1)  # no time left: shed at once
    assert info.value.reason is Reason.OVERLOADED
    started = time.monotonic()
    with pytest.raises(GatewayError):
        await admission.acquire(KEY, 1, HIGH, time.monotonic() + 0.05)
    assert 0.04 <= time.monotonic() - started < 1.0
    holder.release()


async def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on() -> None:
    admission = _admission()
    holder = await admission.acquire(KEY, 1, NORMAL, None)
    gone = asyncio.create_task(admission.acquire(KEY, 1, HIGH, None))
    await _queued(admission, 1)
    stays = asyncio.create_task(admission.acquire(KEY, 1, LOW, None))
    await _queued(admission, 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert admission.waiting(KEY) == 1
    holder.release()
    slot = await stays
    assert admission.active(KEY) == 1
    slot.release()
    slot.release()  # idempotent
    assert admission.active(KEY) == 0
