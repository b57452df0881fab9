"""Options and helpers shared by the client commands of the `homa` CLI."""

from __future__ import annotations

from collections.abc import Iterator
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
