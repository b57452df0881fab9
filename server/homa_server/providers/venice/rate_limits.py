"""Venice's rate-limit headers -> seconds to wait before retrying a 429.

Venice sends `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on every answer. The resets
differ in kind: `x-ratelimit-reset-requests` is a Unix timestamp (seconds per Venice's rate-limit
page; values in milliseconds, as Venice's newer guides describe, are recognised by their size) and
`x-ratelimit-reset-tokens` is seconds. The limit to wait for is the exhausted one, whose
`x-ratelimit-remaining-*` is 0 (the later reset if both are). `Retry-After` (sent with "model is
currently overloaded") wins over all of them.

A 429 can also come from Venice's failed-request budget: more than 20 failed requests in 30 s block
the key for 30 s ("Too many failed attempts ... Please wait 30s"). It waits for
`x-ratelimit-resets` (the budget's reset, Unix ms) when sent, else 30 s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from homa_server.providers._http import parse_retry_after

__all__ = ["BUDGET_TEXT", "limit_name", "rate_limit_delay"]

BUDGET_TEXT = "too many failed attempts"  # lower-cased start of the failed-request budget's message
_BUDGET_WAIT_S = 30.0
_MS_TIMESTAMP = 1e11  # beyond this a Unix timestamp is in milliseconds (year 5138 in seconds)


def rate_limit_delay(headers: Mapping[str, str], message: str = "", now: float | None = None) -> float | None:
    """Seconds until a Venice rate limit lets requests through again, or None when unknown.

    Args:
        headers: the 429's headers (case-insensitive).
        message: the upstream message (recognises the failed-request budget).
        now: current Unix time (defaults to `time.time()`).
    """
    explicit = parse_retry_after(headers)
    if explicit is not None:
        return explicit
    now = time.time() if now is None else now
    if BUDGET_TEXT in message.lower():
        resets = _timestamp_delay(headers.get("x-ratelimit-resets"), now)
        return resets if resets is not None else _BUDGET_WAIT_S
    requests = _timestamp_delay(headers.get("x-ratelimit-reset-requests"), now)
    tokens = _seconds(headers.get("x-ratelimit-reset-tokens"))
    exhausted = [
        delay
        for delay, remaining in (
            (requests, headers.get("x-ratelimit-remaining-requests")),
            (tokens, headers.get("x-ratelimit-remaining-tokens")),
        )
        if delay is not None and remaining is not None and remaining.strip() == "0"
    ]
    if exhausted:
        return max(exhausted)
    return requests if requests is not None else tokens


def _timestamp_delay(value: str | None, now: float) -> float | None:
    stamp = _seconds(value)
    if stamp is None:
        return None
    if stamp > _MS_TIMESTAMP:
        stamp /= 1000.0
    return max(0.0, stamp - now)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0.0 else None


def limit_name(message: str, headers: Mapping[str, str]) -> str:
    """The QuotaFailure description of a 429: which limit was hit."""
    if BUDGET_TEXT in message.lower():
        return "failed_request_budget"
    for dimension in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{dimension}")
        if remaining is not None and remaining.strip() == "0":
            return dimension
    return "rate_limit"
