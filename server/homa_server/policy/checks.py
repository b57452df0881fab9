"""The backend checks of one call: what each subject's limits charge, under which keys.

For a subject `S` (`key:key_1`, `tenant:acme`, `model:openai/gpt-4o`) with limits:
    * `requests_per_minute` N -> a `RateCheck` on `S:rpm` (sliding 60-second log, limit N);
    * `tokens_per_minute` N -> the estimated tokens on `S:tpm:<UTC minute index>` (lives 120 s);
    * `daily_cost_micros` / `monthly_cost_micros` -> the estimated cost on `S:cost:d:<YYYYMMDD>` /
      `S:cost:m:<YYYYMM>` (lives until the period is over plus an hour).
Token and cost checks need an estimate; without one (no such limit applies) only requests count.
QuotaFailure subjects are `S <limit name>`, descriptions the limit in words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from homa_server.policy import periods
from homa_server.policy.backends.base import CounterCheck, RateCheck
from homa_server.policy.reservation import Estimate

#: Limits that need the call's estimate (tokens or cost).
ESTIMATED: Final = frozenset({"tokens_per_minute", "daily_cost_micros", "monthly_cost_micros"})
_TOKEN_WINDOW_TTL_S = 120
_BUDGETS: Final[tuple[tuple[str, Callable[[float], tuple[str, float]], str, str], ...]] = (
    ("daily_cost_micros", periods.day, "cost:d", "per UTC day"),
    ("monthly_cost_micros", periods.month, "cost:m", "per UTC month"),
)


@dataclass(frozen=True, slots=True)
class Subject:
    """One limited subject (`key:key_1`, `tenant:acme`, `model:openai/gpt-4o`) and its limits."""

    name: str
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Checks:
    """Everything one admission checks, and the counters its settlement adjusts."""

    rates: list[RateCheck] = field(default_factory=list)
    counters: list[CounterCheck] = field(default_factory=list)
    token_keys: list[str] = field(default_factory=list)
    cost_keys: list[str] = field(default_factory=list)


def needs_estimate(subjects: Sequence[Subject]) -> bool:
    """Whether any subject limits tokens or cost (so the call must be estimated)."""
    return any(name in ESTIMATED for subject in subjects for name in subject.limits)


def build_checks(subjects: Sequence[Subject], estimate: Estimate | None, now: float) -> Checks:
    """The checks of one call at Unix time `now` (see the module docstring)."""
    checks = Checks()
    for subject in subjects:
        rpm = subject.limits.get("requests_per_minute")
        if rpm is not None:
            checks.rates.append(
                RateCheck(
                    f"{subject.name}:rpm",
                    f"{subject.name} requests_per_minute",
                    f"{rpm} requests per minute",
                    rpm,
                )
            )
        if estimate is None:
            continue
        tpm = subject.limits.get("tokens_per_minute")
        if tpm is not None:
            period, left = periods.minute(now)
            key = f"{subject.name}:tpm:{period}"
            checks.counters.append(
                CounterCheck(
                    key,
                    f"{subject.name} tokens_per_minute",
                    f"{tpm} tokens per minute",
                    tpm,
                    estimate.tokens,
                    _TOKEN_WINDOW_TTL_S,
                    left,
                )
            )
            checks.token_keys.append(key)
        for name, period_of, tag, per in _BUDGETS:
            budget = subject.limits.get(name)
            if budget is None:
                continue
            period, left = period_of(now)
            key = f"{subject.name}:{tag}:{period}"
            checks.counters.append(
                CounterCheck(
                    key,
                    f"{subject.name} {name}",
                    f"{budget} micro-USD {per}",
                    budget,
                    estimate.cost_micros,
                    int(left) + 3600,
                    left,
                )
            )
            checks.cost_keys.append(key)
    return checks
