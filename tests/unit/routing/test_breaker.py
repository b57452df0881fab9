"""Circuit breaker: consecutive failures, error rate, cool-down, half-open probes (fake clock)."""

from __future__ import annotations

from homa_server.routing.breaker import BreakerBoard, CircuitBreaker, CircuitState, LastError, Permit
from homa_server.settings import BreakerSettings

ERR = LastError(0.0, "UPSTREAM_UNAVAILABLE", "boom", 503)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **overrides: object) -> CircuitBreaker:
    settings = BreakerSettings(**{"consecutive_failures": 3, "cooldown_s": 10.0, **overrides})  # type: ignore[arg-type]
    return CircuitBreaker(settings, clock)


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.failure(permit, ERR)


def test_opens_after_consecutive_failures_and_refuses() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN
    assert breaker.acquire() is None
    assert breaker.retry_in() == 10.0
    assert breaker.last_error == ERR


def test_a_success_resets_the_consecutive_count() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is Permit.CALL
    breaker.success(permit)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


def test_error_rate_over_the_window_opens() -> None:
    clock = Clock()
    breaker = _breaker(clock, consecutive_failures=100, min_calls=10, error_rate=0.5, window_s=30.0)
    for i in range(10):
        permit = breaker.acquire()
        assert permit is not None
        if i % 2:
            breaker.failure(permit, ERR)
        else:
            breaker.success(permit)
        clock.now += 1
    assert breaker.state is CircuitState.OPEN


def test_old_outcomes_leave_the_window() -> None:
    clock = Clock()
    breaker = _breaker(clock, consecutive_failures=100, min_calls=4, error_rate=0.5, window_s=5.0)
    _fail(breaker, 3)
    clock.now += 10  # the three failures age out
    for _ in range(4):
        permit = breaker.acquire()
        assert permit is not None
        breaker.success(permit)
    _fail(breaker)
    assert breaker.state is CircuitState.CLOSED  # 1 failure in 5 calls


def test_half_open_probe_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 10
    assert breaker.state is CircuitState.HALF_OPEN
    probe = breaker.acquire()
    assert probe is Permit.PROBE
    assert breaker.acquire() is None  # one probe at a time
    breaker.success(probe)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.acquire() is Permit.CALL


def test_half_open_probe_failure_reopens_for_another_cooldown() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is Permit.PROBE
    breaker.failure(probe, ERR)
    assert breaker.state is CircuitState.OPEN
    clock.now += 9.9
    assert breaker.acquire() is None
    clock.now += 0.1
    assert breaker.acquire() is Permit.PROBE


def test_a_released_probe_frees_its_slot() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is Permit.PROBE
    breaker.release(probe)  # e.g. cancelled by the client: no verdict
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() is Permit.PROBE


def test_disabled_breaker_never_opens_but_keeps_the_last_error() -> None:
    clock = Clock()
    breaker = _breaker(clock, enabled=False)
    _fail(breaker, 10)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.last_error == ERR


def test_board_keys_breakers_by_deployment_and_groups_by_provider() -> None:
    board = BreakerBoard(BreakerSettings())
    a = board.get("openai/gpt-4o")
    assert board.get("openai/gpt-4o") is a
    board.get("openai/gpt-4o-mini")
    board.get("openai-eu/gpt-4o")
    assert len(board.of_provider("openai")) == 2
