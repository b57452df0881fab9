"""UTC periods of the limiter's counters: the clock minute, the calendar day and the calendar month.

Each function returns (period id, seconds until the period ends) for a Unix time; the id is part of
the counter's key, so a new period starts from zero on every replica at the same moment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def minute(now: float) -> tuple[str, float]:
    """The UTC clock minute containing `now`."""
    index = int(now // 60)
    return str(index), (index + 1) * 60 - now


def day(now: float) -> tuple[str, float]:
    """The UTC calendar day containing `now` (`YYYYMMDD`)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y%m%d"), (start + timedelta(days=1)).timestamp() - now


def month(now: float) -> tuple[str, float]:
    """The UTC calendar month containing `now` (`YYYYMM`)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y%m"), following.timestamp() - now
