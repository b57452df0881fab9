"""Redis limiter backend: counts shared by every replica (see backends/base.py for the contract).

Atomicity: each `admit` and each `settle` is ONE Lua script, so checks across a key, a tenant and a
model are all-or-nothing even with many replicas. Request rates use a sliding-window log (a sorted
set of admission times named by reservation token, trimmed to the window; the time is Redis's own
`TIME`, so replicas' clocks do not matter); token and cost counters are plain integers whose key
names the period and which expire when it is over. Admission stores a reservation marker (with a
TTL); settling deletes it and adjusts the counters only if it was there, so a second settle (or a
retried one) changes nothing and Redis holds markers only for calls in flight.

Bounded waits: connect and socket timeouts are `timeout_s`, redis-py's own retries are off, and the
caller waits for the operation (a task of its own) at most `timeout_s`; an operation given up on is
cancelled and cleaned up in the background. After a failure the backend does not touch
Redis for `recheck_after_s` (it raises `BackendUnavailableError` at once), so an outage never makes
calls wait in turn. Failures raise `BackendUnavailableError`; the limiter applies the configured policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from homa_server.policy.backends.base import (
    RESERVATION_TTL_S,
    BackendUnavailableError,
    CounterCheck,
    Exceeded,
    RateCheck,
)

# KEYS: rate logs, then counters, then the reservation marker. ARGV: n_rates, n_counters, token,
# marker TTL, then (limit, window_ms) per rate, then (limit, amount, ttl_s) per counter. Returns {}
# when admitted, else flat {index, retry_ms} pairs (1-based check index; retry_ms -1 = never by
# waiting, -2 = when the counter's period ends).
_ADMIT = """
local nr = tonumber(ARGV[1])
local nc = tonumber(ARGV[2])
local token = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local a = 5
for i = 1, nr do
  local limit = tonumber(ARGV[a])
  local window = tonumber(ARGV[a + 1])
  a = a + 2
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local freeing = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local retry = window
    if freeing[2] then retry = tonumber(freeing[2]) + window - now end
    out[#out + 1] = i
    out[#out + 1] = retry
  end
end
for j = 1, nc do
  local limit = tonumber(ARGV[a])
  local amount = tonumber(ARGV[a + 1])
  a = a + 3
  local used = tonumber(redis.call('GET', KEYS[nr + j]) or '0')
  if used + amount > limit then
    out[#out + 1] = nr + j
    if amount > limit then out[#out + 1] = -1 else out[#out + 1] = -2 end
  end
end
if #out > 0 then return out end
a = 5
for i = 1, nr do
  local window = tonumber(ARGV[a + 1])
  a = a + 2
  redis.call('ZADD', KEYS[i], now, token)
  redis.call('PEXPIRE', KEYS[i], window)
end
for j = 1, nc do
  local amount = tonumber(ARGV[a + 1])
  local ttl = tonumber(ARGV[a + 2])
  a = a + 3
  redis.call('INCRBY', KEYS[nr + j], amount)
  if redis.call('TTL', KEYS[nr + j]) < 0 then redis.call('EXPIRE', KEYS[nr + j], ttl) end
end
if nc > 0 then redis.call('SET', KEYS[nr + nc + 1], '1', 'EX', ARGV[4]) end
return out
"""

# KEYS[1]: the reservation marker; KEYS[2..]: counters. ARGV: the deltas.
_SETTLE = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
for i = 2, #KEYS do
  local delta = tonumber(ARGV[i - 1])
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], delta) < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""


class RedisBackend:
    """Limiter windows and counters in Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "homa:limits:",
        timeout_s: float = 0.1,
        recheck_after_s: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        self._prefix = key_prefix
        self._timeout = timeout_s
        self._recheck = recheck_after_s
        self._down_until = 0.0
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)

    async def _run(self, script: Any, keys: list[str], args: list[int | float | str]) -> Any:
        if time.monotonic() < self._down_until:
            raise BackendUnavailableError("redis marked unavailable after a recent failure")
        # A task of its own, waited for at most `timeout_s`: redis-py's clean-up after a cancellation
        # (closing the connection) then happens in the background, never on the caller's time.
        task = asyncio.ensure_future(script(keys=keys, args=args))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except BaseException:
            task.cancel()
            self._abandon(task)
            raise
        try:
            if not done:
                task.cancel()
                self._abandon(task)
                raise TimeoutError(f"no answer within {self._timeout} s")
            return task.result()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._recheck
            raise BackendUnavailableError(f"redis: {type(exc).__name__}") from exc

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned operation's failure was already reported

    async def admit(
        self, token: str, rates: Sequence[RateCheck], counters: Sequence[CounterCheck]
    ) -> list[Exceeded]:
        """See `LimitBackend.admit`."""
        keys = [self._prefix + c.key for c in rates] + [self._prefix + c.key for c in counters]
        keys.append(f"{self._prefix}rsv:{token}")
        args: list[int | float | str] = [len(rates), len(counters), token, RESERVATION_TTL_S]
        for rate in rates:
            args += [rate.limit, int(rate.window_s * 1000)]
        for counter in counters:
            args += [counter.limit, counter.amount, counter.ttl_s]
        result = await self._run(self._admit, keys, args)
        checks: list[RateCheck | CounterCheck] = [*rates, *counters]
        exceeded = []
        for index, retry_ms in zip(result[::2], result[1::2], strict=True):
            check = checks[int(index) - 1]
            retry: float | None
            if int(retry_ms) == -1:
                retry = None
            elif int(retry_ms) == -2 and isinstance(check, CounterCheck):
                retry = check.reset_in_s
            else:
                retry = max(0, int(retry_ms)) / 1000.0
            exceeded.append(Exceeded(check.subject, check.description, retry))
        return exceeded

    async def settle(self, token: str, deltas: Sequence[tuple[str, int]]) -> bool:
        """See `LimitBackend.settle`."""
        keys = [f"{self._prefix}rsv:{token}"] + [self._prefix + key for key, _ in deltas]
        args: list[int | float | str] = [delta for _, delta in deltas]
        return bool(await self._run(self._settle, keys, args))

    async def aclose(self) -> None:
        """Cancel operations given up on, then close the connection pool."""
        for task in list(self._abandoned):
            task.cancel()
        if self._abandoned:
            await asyncio.wait(self._abandoned, timeout=self._timeout)
        await self._client.aclose()
