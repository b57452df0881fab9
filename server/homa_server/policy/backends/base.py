"""What a limiter backend stores and how it answers: the contract both backends implement.

Two kinds of check, applied all-or-nothing by `LimitBackend.admit`:
    * `RateCheck`: a sliding-window log of admitted requests (exact: at most `limit` admissions in
      any `window_s` seconds). Admission adds one entry named by the reservation token; entries are
      never removed early (a request that was made counts, whatever its outcome).
    * `CounterCheck`: an amount (tokens, micro-USD) added to a counter that lives until its period
      ends (`key` names the period: a UTC minute, day or month). Admitted when
      `current + amount <= limit`. `settle` later adds the (possibly negative) difference between the
      real and the reserved amount, at most once per reservation token, and never below zero.

An admission with counters leaves the token *outstanding* for `RESERVATION_TTL_S`; `settle` consumes
it, so a second settle (or one after the TTL: the estimate then stays charged) changes nothing. Only
calls in flight are remembered: memory stays bounded by the concurrency, not the request rate.

`admit` returns the checks that failed (nothing is applied then) with the seconds until waiting can
help (`retry_after_s`; None when the amount alone is larger than the limit, so it never will).
Backends raise `BackendUnavailableError` when their store cannot be reached; they never block longer
than their configured timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: How long an admitted reservation waits for its settlement (a longer call keeps its estimate).
RESERVATION_TTL_S = 3600


class BackendUnavailableError(Exception):
    """The limiter's store could not be reached (or answered too late)."""


@dataclass(frozen=True, slots=True)
class RateCheck:
    """At most `limit` admissions per sliding `window_s` seconds under `key`."""

    key: str
    subject: str
    description: str
    limit: int
    window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """Add `amount` to the counter `key` if the total stays within `limit`.

    `ttl_s` keeps the counter alive until its period is over; `reset_in_s` is how long until the
    period ends (the retry delay when the limit is reached).
    """

    key: str
    subject: str
    description: str
    limit: int
    amount: int
    ttl_s: int
    reset_in_s: float


@dataclass(frozen=True, slots=True)
class Exceeded:
    """One failed check: which one, and when retrying can succeed (None = never by waiting)."""

    subject: str
    description: str
    retry_after_s: float | None


class LimitBackend(Protocol):
    """Storage of the limiter's windows and counters (see the module docstring)."""

    async def admit(
        self, token: str, rates: Sequence[RateCheck], counters: Sequence[CounterCheck]
    ) -> list[Exceeded]:
        """Apply every check atomically, or none; returns the failed ones (empty = admitted).

        Raises:
            BackendUnavailableError: the store could not be reached in time; nothing is known applied.
        """
        ...

    async def settle(self, token: str, deltas: Sequence[tuple[str, int]]) -> bool:
        """Add each (counter key, delta) if `token` is outstanding (consuming it); False otherwise
        (already settled, expired, or admitted without counters).

        Counters that have expired are left alone; a counter never goes below zero.

        Raises:
            BackendUnavailableError: the store could not be reached in time.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
