"""`homa usage`: aggregated usage and cost, as a table, JSON, CSV or XML.

`--format table` calls GetUsage (every page) and prints one line per row plus the totals, cost in
USD; `json`, `csv` and `xml` call ExportUsage and print the document the gateway rendered
(reports/formats.py), byte for byte. `--since` / `--until` take a date (`2026-11-01`, a whole day
in `--tz`, `--until` included) or an ISO date-time (`--until` excluded); `--since` defaults to the
first day of the current month. Needs a key with `admin:read`.
"""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_client import DEFAULT_TARGET
from homa_client.admin_usage import UsageFilter
from homa_server.commands.common import ApiKey, Target, Timeout, Tls, aligned_table, open_client

usage_app = typer.Typer(help="Show usage and cost.", invoke_without_command=True)


class Dimension(StrEnum):
    """A `--by` dimension."""

    KEY = "key"
    TENANT = "tenant"
    MODEL = "model"
    PROVIDER = "provider"
    DAY = "day"
    HOUR = "hour"


class UsageFormat(StrEnum):
    """Output format of `homa usage`."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    XML = "xml"


_MEASURES: Final = [
    ("REQUESTS", "requests"),
    ("INPUT", "input_tokens"),
    ("CACHED", "cached_input_tokens"),
    ("OUTPUT", "output_tokens"),
    ("REASONING", "reasoning_tokens"),
    ("ERRORS", "errors"),
]
_GROUP_FIELD: Final = {
    Dimension.KEY: ("KEY", "api_key_id"),
    Dimension.TENANT: ("TENANT", "tenant"),
    Dimension.MODEL: ("MODEL", "model"),
    Dimension.PROVIDER: ("PROVIDER", "provider"),
}


def parse_bound(text: str, zone: ZoneInfo, *, end: bool) -> dt.datetime:
    """A `--since`/`--until` value as an aware datetime (a date is a whole day in `zone`).

    Raises:
        typer.BadParameter: not an ISO date or date-time.
    """
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected 2026-11-01 or 2026-11-01T12:00, got {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _cost(micros: int) -> str:
    return f"${micros / 1_000_000:,.6f}".rstrip("0").rstrip(".") if micros else "$0"


def _bucket(row: admin_pb2.UsageRow, zone: ZoneInfo, unit: Dimension) -> str:
    when = dt.datetime.fromtimestamp(row.bucket_start_time.ToMicroseconds() / 1_000_000, tz=zone)
    return when.strftime("%Y-%m-%d" if unit is Dimension.DAY else "%Y-%m-%d %H:%M")


def render_table(response: admin_pb2.GetUsageResponse, by: list[Dimension], zone: ZoneInfo) -> str:
    """Rows and a TOTAL line, columns aligned."""
    header = [_GROUP_FIELD[d][0] if d in _GROUP_FIELD else d.value.upper() for d in by]
    header += [name for name, _ in _MEASURES] + ["COST"]
    lines = [header]
    for row in response.rows:
        cells = [
            getattr(row, _GROUP_FIELD[d][1]) or "-" if d in _GROUP_FIELD else _bucket(row, zone, d)
            for d in by
        ]
        lines.append(cells + [str(getattr(row, f)) for _, f in _MEASURES] + [_cost(row.cost_micros)])
    if by:
        totals = response.totals
        lines.append(
            ["TOTAL"]
            + [""] * (len(by) - 1)
            + [str(getattr(totals, f)) for _, f in _MEASURES]
            + [_cost(totals.cost_micros)]
        )
    return aligned_table(header, lines[1:])


@usage_app.callback()
def usage(
    *,
    since: Annotated[
        str | None, typer.Option("--since", help="Start: date (in --tz) or ISO date-time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End: date (included) or date-time (excluded).")
    ] = None,
    by: Annotated[list[Dimension] | None, typer.Option("--by", help="Group by; repeat for several.")] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="Only this tenant.")] = "",
    model: Annotated[str, typer.Option("--model", help="Only this model (provider/model).")] = "",
    provider: Annotated[str, typer.Option("--provider", help="Only this provider instance.")] = "",
    key: Annotated[str, typer.Option("--key", help="Only this API key id.")] = "",
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone for dates, days and hours.")] = "UTC",
    output: Annotated[UsageFormat, typer.Option("--format", "-f", help="Output format.")] = UsageFormat.TABLE,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 60.0,
) -> None:
    """Aggregated usage and cost over a time range (see `homa usage --help`)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    start = (
        parse_bound(since, zone, end=False)
        if since
        else dt.datetime.now(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    )
    dimensions = list(by or [])
    query = UsageFilter(
        start=start,
        end=parse_bound(until, zone, end=True) if until else None,
        group_by=["api_key" if d is Dimension.KEY else d.value for d in dimensions],
        tenant=tenant,
        api_key_id=key,
        model=model,
        provider=provider,
        time_zone=tz,
    )
    with open_client(target, api_key, tls, timeout) as client:
        if output is UsageFormat.TABLE:
            typer.echo(render_table(client.admin.get_usage(query), dimensions, zone))
            return
        document = client.admin.export_usage(query, output.value)
    sys.stdout.buffer.write(document.data)
    if not document.data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
