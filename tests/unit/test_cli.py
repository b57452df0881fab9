"""The client commands of `homa` (chat, models, info) through typer's CliRunner.

The gateway runs in-process on a background thread (tests/rpc/test_client_support.py), so the
commands' blocking client calls reach it from the test's thread.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from homa_server.cli import app
from tests.rpc.test_client_support import ThreadedGateway, closed_port_target

runner = CliRunner()


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with ThreadedGateway() as gateway:
        yield gateway.target


def homa(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin, env=env)


def test_chat_prints_the_answer(target: str) -> None:
    result = homa("chat", "hello there", "--model", "mock/echo", "--target", target)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: hello there\n"
    assert result.stderr == ""


def test_chat_with_system_temperature_and_max_tokens(target: str) -> None:
    result = homa(
        "chat", "hi", "-m", "mock/echo", "--system", "Be brief.", "--temperature", "0.2",
        "--max-tokens", "50", "-t", target,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: hi\n"


def test_chat_stream_prints_deltas(target: str) -> None:
    result = homa("chat", "stream this answer", "-m", "mock/echo", "--stream", "-t", target)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: stream this answer\n"


def test_chat_json_prints_the_complete_response(target: str) -> None:
    result = homa("chat", "as json", "-m", "mock/echo", "--json", "-t", target)

    assert result.exit_code == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["message"]["parts"] == [{"text": "echo: as json"}]
    assert response["finishReason"] == "FINISH_REASON_STOP"
    assert response["route"]["provider"] == "mock"


def test_chat_stream_json_prints_one_event_per_line(target: str) -> None:
    result = homa("chat", "x", "-m", "mock/tool", "--stream", "--json", "-t", target)

    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert next(iter(events[0])) == "route"
    assert events[-1]["finish"]["reason"] == "FINISH_REASON_TOOL_CALLS"
    assert any(event.get("toolCall", {}).get("name") == "get_weather" for event in events)


def test_chat_prints_tool_calls(target: str) -> None:
    result = homa("chat", "weather?", "-m", "mock/tool", "-t", target)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == 'tool call call_mock_1: get_weather({"city":"Paris"})\n'


def test_chat_reads_the_prompt_from_stdin(target: str) -> None:
    result = homa("chat", "-", "-m", "mock/echo", "-t", target, stdin="from stdin\n")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: from stdin\n"


def test_chat_rejects_an_empty_prompt() -> None:
    result = homa("chat", "  ", "-m", "mock/echo", "-t", closed_port_target())

    assert result.exit_code == 2
    assert "the prompt is empty" in result.stderr


def test_target_from_environment(target: str) -> None:
    result = homa("chat", "env target", "-m", "mock/echo", env={"HOMA_TARGET": target})

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: env target\n"


def test_gateway_error_prints_reason_and_exits_1(target: str) -> None:
    result = homa("chat", "hi", "-m", "mock/rate-limited", "-t", target)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: UPSTREAM_RATE_LIMITED: ")
    assert "retry after 2 s" in result.stderr


def test_invalid_request_lists_field_violations(target: str) -> None:
    result = homa("chat", "hi", "-m", "mock/echo", "--temperature", "7", "-t", target)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: INVALID_REQUEST: ")
    assert "  temperature: must be between 0 and 2" in result.stderr


def test_stream_cut_midway_keeps_partial_output_and_fails(target: str) -> None:
    result = homa("chat", "go", "-m", "mock/die-midway", "--stream", "-t", target)

    assert result.exit_code == 1
    assert result.stdout.endswith("\n")
    assert result.stdout.strip()  # the deltas that arrived before the cut
    assert result.stderr.startswith("error: UPSTREAM_STREAM_INTERRUPTED: ")


def test_connection_refused_is_explained() -> None:
    address = closed_port_target()

    result = homa("chat", "hi", "-m", "mock/echo", "-t", address)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: UNAVAILABLE: cannot reach the Homa gateway at {address}")
    assert "connection refused" in result.stderr


def test_models_table(target: str) -> None:
    result = homa("models", "-t", target)

    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["MODEL", "PROVIDER"]
    assert "mock/echo" in [row.split()[0] for row in rows]


def test_models_json(target: str) -> None:
    result = homa("models", "--format", "json", "--provider", "mock", "-t", target)

    assert result.exit_code == 0, result.stderr
    ids = [model["id"] for model in json.loads(result.stdout)["models"]]
    assert {"mock/echo", "mock/tool"} <= set(ids)


def test_models_csv(target: str) -> None:
    result = homa("models", "-f", "csv", "-t", target)

    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    echo = next(row for row in rows if row["id"] == "mock/echo")
    assert {"id": "mock/echo", "provider": "mock", "provider_model": "echo"}.items() <= echo.items()


def test_models_of_unknown_provider(target: str) -> None:
    result = homa("models", "--provider", "nope", "-t", target)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: PROVIDER_NOT_FOUND: ")


def test_info(target: str) -> None:
    result = homa("info", "-t", target)

    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["service"].strip() == "homa"
    assert lines["providers"].strip() == "mock, local"
    assert "homa.chat.v1" in lines["apis"]


def test_info_json(target: str) -> None:
    result = homa("info", "--json", "-t", target)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["serviceName"] == "homa"


def test_serve_is_still_there() -> None:
    result = homa("serve", "--help")

    assert result.exit_code == 0
    assert "--config" in result.stdout
    assert "--workers" in result.stdout
