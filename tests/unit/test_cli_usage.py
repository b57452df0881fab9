"""`homa usage` through typer's CliRunner against an in-process gateway with seeded usage rows."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from homa_server.cli import app
from homa_server.commands.usage import parse_bound
from homa_server.store.records import UsageRecord
from homa_server.store.usage import insert_usage
from tests.rpc.test_client_support import ThreadedGateway

runner = CliRunner()
PARIS = ZoneInfo("Europe/Paris")


def _at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000


def _row(when: str, status: str, model: str, **tokens: int) -> UsageRecord:
    provider = model.split("/", maxsplit=1)[0]
    return UsageRecord(_at(when), "chat.Complete", "acme", status, model=model, provider=provider, **tokens)  # type: ignore[arg-type]


ROWS = [
    _row("2026-11-01T10:00", "completed", "mock/echo", input_tokens=100, output_tokens=50, cost_micros=200),
    _row("2026-11-02T10:00", "failed", "mock/echo", input_tokens=10, cost_micros=10),
    _row(
        "2026-11-02T11:00",
        "completed",
        "openai/gpt-4o",
        input_tokens=1000,
        output_tokens=100,
        cost_micros=3_500_000,
    ),
]


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with ThreadedGateway() as gateway:
        inner = gateway._gateway
        assert inner is not None

        async def seed() -> None:
            async with inner.db.begin() as connection:
                await insert_usage(connection, [dataclasses.asdict(r) for r in ROWS])

        asyncio.run_coroutine_threadsafe(seed(), gateway._loop).result(30)
        yield gateway.target


def homa(*args: str) -> Result:
    return runner.invoke(app, ["usage", *args])


RANGE = ("--since", "2026-11-01", "--until", "2026-11-30")


def test_table_by_model_with_totals_and_cost(target: str) -> None:
    result = homa(*RANGE, "--by", "model", "--target", target)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "REQUESTS",
        "INPUT",
        "CACHED",
        "OUTPUT",
        "REASONING",
        "ERRORS",
        "COST",
    ]
    assert lines[1].split() == ["mock/echo", "2", "110", "0", "50", "0", "1", "$0.00021"]
    assert lines[2].split() == ["openai/gpt-4o", "1", "1000", "0", "100", "0", "0", "$3.5"]
    assert lines[3].split() == ["TOTAL", "3", "1110", "0", "150", "0", "1", "$3.50021"]


def test_table_by_day_in_a_time_zone(target: str) -> None:
    result = homa(*RANGE, "--by", "day", "--tz", "Europe/Paris", "--target", target)
    assert result.exit_code == 0, result.stderr
    days = [line.split()[0] for line in result.stdout.splitlines()[1:-1]]
    assert days == ["2026-11-01", "2026-11-02"]


def test_csv_json_and_xml_documents(target: str) -> None:
    by = ("--by", "model", "--by", "day")
    result = homa(*RANGE, *by, "--format", "csv", "--target", target)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [(r["model"], r["requests"]) for r in rows] == [
        ("mock/echo", "1"),
        ("mock/echo", "1"),
        ("openai/gpt-4o", "1"),
    ]
    as_json = json.loads(homa(*RANGE, *by, "--format", "json", "--target", target).stdout)
    assert [r["cost_micros"] for r in as_json] == [200, 10, 3_500_000]
    root = ET.fromstring(homa(*RANGE, *by, "--format", "xml", "--target", target).stdout)
    assert [r.findtext("model") for r in root.findall("row")] == ["mock/echo", "mock/echo", "openai/gpt-4o"]


def test_gateway_validation_errors_are_reported(target: str) -> None:
    result = homa("--since", "2026-11-05", "--until", "2026-11-01T00:00", "--target", target)
    assert result.exit_code == 1
    assert "INVALID_REQUEST" in result.stderr
    assert "end_time" in result.stderr


def test_bad_time_zone_is_a_usage_error() -> None:
    result = homa("--tz", "Mars/Olympus")
    assert result.exit_code == 2
    assert "unknown time zone" in result.stderr


def test_parse_bound() -> None:
    assert parse_bound("2026-11-01", PARIS, end=False) == dt.datetime(2026, 11, 1, tzinfo=PARIS)
    assert parse_bound("2026-11-01", PARIS, end=True) == dt.datetime(2026, 11, 2, tzinfo=PARIS)
    assert parse_bound("2026-11-01T12:30", PARIS, end=True) == dt.datetime(2026, 11, 1, 12, 30, tzinfo=PARIS)
    assert parse_bound("2026-11-01T12:30+00:00", PARIS, end=False).utcoffset() == dt.timedelta(0)
    with pytest.raises(Exception, match="expected"):
        parse_bound("yesterday", PARIS, end=False)
