"""Options and helpers shared by the client commands of the `homa` CLI."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, NoReturn

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message

from homa_client import HomaClient, HomaError

DEFAULT_CLIENT_TIMEOUT_S = 600.0

Target = Annotated[
    str,
    typer.Option("--target", "-t", envvar="HOMA_TARGET", help="Gateway address host:port.", show_envvar=True),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="HOMA_API_KEY", help="API key (bearer token).", show_envvar=True),
]
Tls = Annotated[bool, typer.Option("--tls", help="Use TLS with the system root certificates.")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.001, help="Deadline of each call in seconds.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print protobuf JSON.")]


class ListFormat(StrEnum):
    """Output format of list commands."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def fail(error: HomaError, target: str) -> NoReturn:
    """Print `error: <REASON>: <message>` on stderr and exit 1."""
    message = error.message
    if error.code is grpc.StatusCode.UNAVAILABLE and not error.from_gateway:
        cause = "connection refused" if "connection refused" in message.lower() else message
        message = (
            f"cannot reach the Homa gateway at {target} ({cause}); is it running? "
            "Set --target or HOMA_TARGET to point at it"
        )
    typer.echo(f"error: {error.reason}: {message}", err=True)
    for violation in error.field_violations:
        typer.echo(f"  {violation.field}: {violation.description}", err=True)
    if error.retry_after is not None:
        typer.echo(f"  retry after {error.retry_after:g} s", err=True)
    raise typer.Exit(1)


@contextmanager
def open_client(target: str, api_key: str | None, tls: bool, timeout: float) -> Iterator[HomaClient]:
    """A client for one command; turns its failures into the CLI's error output."""
    credentials = grpc.ssl_channel_credentials() if tls else None
    try:
        with HomaClient(target, credentials=credentials, api_key=api_key, timeout=timeout) as client:
            yield client
    except HomaError as error:
        fail(error, target)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def to_json(message: Message, *, compact: bool = False) -> str:
    return json_format.MessageToJson(message, indent=None if compact else 2, ensure_ascii=False)


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """`header` and `rows` as left-aligned columns separated by two spaces."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def print_list(
    output: ListFormat,
    *,
    as_json: Callable[[], str],
    csv_header: Sequence[str],
    table_header: Sequence[str],
    rows: Sequence[Sequence[str]],
    empty: str,
) -> None:
    """Print a list command's result: JSON (`as_json()`), CSV (`csv_header` + rows) or an aligned
    table (`table_header` + rows; `empty` on stderr when there is nothing)."""
    if output is ListFormat.JSON:
        typer.echo(as_json())
    elif output is ListFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(csv_header)
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    elif rows:
        typer.echo(aligned_table(table_header, rows))
    else:
        typer.echo(empty, err=True)
