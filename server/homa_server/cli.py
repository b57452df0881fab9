"""The `homa` command line: serve, migrate, chat, models, info, keys, usage.

`homa serve` runs the gateway; the other commands are clients of a running gateway
(`--target`, default `localhost:50051`, or `$HOMA_TARGET`) built on `homa_client`.
Client commands print results on stdout; failures print `error: <REASON>: <message>` on stderr
and exit with status 1 (130 when interrupted).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_client import DEFAULT_TARGET, ChatRequestBuilder, HomaClient, text_of, tool_calls_of
from homa_server.commands.common import (
    DEFAULT_CLIENT_TIMEOUT_S,
    ApiKey,
    JsonOutput,
    ListFormat,
    Target,
    Timeout,
    Tls,
    open_client,
    print_list,
    to_json,
)
from homa_server.commands.keys import keys_app
from homa_server.commands.secrets import secrets_app
from homa_server.commands.usage import usage_app
from homa_server.settings import SettingsError, load_settings
from homa_server.store.database import Database

app = typer.Typer(name="homa", help="Homa AI gateway.", no_args_is_help=True, add_completion=False)
app.add_typer(keys_app, name="keys")
app.add_typer(usage_app, name="usage")
app.add_typer(secrets_app, name="secrets")


@app.callback()
def _root() -> None:
    """Homa AI gateway: `homa serve` runs it; the other commands talk to a running one."""


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (0 = any free port).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes sharing the port.")] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = None,
) -> None:
    """Run the gateway (defaults < YAML < HOMA_* env < these flags)."""
    # Imported here so that the client commands do not load the whole server stack.
    from homa_server.app import run_server  # noqa: PLC0415

    try:
        settings = load_settings(
            config,
            {"server.host": host, "server.port": port, "server.workers": workers, "logging.level": log_level},
        )
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        run_server(settings)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"homa: {exc}", err=True)
        raise typer.Exit(2) from None


# -- client commands ---------------------------------------------------------------------------


def _tool_call_line(call: content_pb2.ToolCall) -> str:
    return f"tool call {call.id}: {call.name}({call.arguments_json})"


def _note_finish(reason: usage_pb2.FinishReason.ValueType) -> None:
    """Tell the user (on stderr) when the answer stopped for another reason than its natural end."""
    if reason not in (usage_pb2.FINISH_REASON_STOP, usage_pb2.FINISH_REASON_TOOL_CALLS):
        typer.echo(f"finish: {usage_pb2.FinishReason.Name(reason).removeprefix('FINISH_REASON_')}", err=True)


def _print_stream(client: HomaClient, request: ChatRequestBuilder, as_json: bool) -> None:
    """Print each delta as it arrives (or each event as a JSON line); the line is ended even on failure."""
    finish = usage_pb2.FINISH_REASON_UNSPECIFIED
    ended_line = True
    try:
        with client.chat.stream(request) as events:
            for event in events:
                kind = event.WhichOneof("event")
                if as_json:
                    typer.echo(to_json(event, compact=True))
                elif kind == "delta" and event.delta.text:
                    typer.echo(event.delta.text, nl=False)
                    sys.stdout.flush()
                    ended_line = event.delta.text.endswith("\n")
                elif kind == "tool_call":
                    typer.echo(("" if ended_line else "\n") + _tool_call_line(event.tool_call))
                    ended_line = True
                elif kind == "finish":
                    finish = event.finish.reason
    finally:
        if not ended_line:
            typer.echo()
    if not as_json:
        _note_finish(finish)


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help='The user message; "-" reads it from stdin.')],
    *,
    model: Annotated[str, typer.Option("--model", "-m", help="Model or alias (default: gateway's).")] = "",
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it is generated.")] = False,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System instructions.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (0-2).")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Maximum output tokens.")] = None,
    as_json: JsonOutput = False,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = DEFAULT_CLIENT_TIMEOUT_S,
) -> None:
    """Send one prompt and print the answer (with --json: the CompleteResponse, or one event per line)."""
    text = sys.stdin.read().rstrip("\n") if prompt == "-" else prompt
    if not text.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    request = ChatRequestBuilder(model)
    if system:
        request.system(system)
    request.user(text)
    if temperature is not None:
        request.temperature(temperature)
    if max_tokens is not None:
        request.max_output_tokens(max_tokens)
    with open_client(target, api_key, tls, timeout) as client:
        if stream:
            _print_stream(client, request, as_json)
            return
        response = client.chat.complete(request)
    if as_json:
        typer.echo(to_json(response))
        return
    answer = text_of(response.message)
    if answer:
        typer.echo(answer)
    for call in tool_calls_of(response.message):
        typer.echo(_tool_call_line(call))
    _note_finish(response.finish_reason)


def _capabilities(model: admin_pb2.Model) -> str:
    caps = model.capabilities
    return ",".join(field.name for field in caps.DESCRIPTOR.fields if getattr(caps, field.name))


_MODEL_COLUMNS = (
    "id",
    "provider",
    "provider_model",
    "context_window_tokens",
    "max_output_tokens",
    "capabilities",
)


def _model_row(model: admin_pb2.Model) -> list[str]:
    return [
        model.id,
        model.provider,
        model.provider_model,
        str(model.context_window_tokens or ""),
        str(model.max_output_tokens or ""),
        _capabilities(model),
    ]


@app.command()
def models(
    *,
    provider: Annotated[str, typer.Option("--provider", "-p", help="Only this provider instance.")] = "",
    output: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.TABLE,
    include_deprecated: Annotated[
        bool, typer.Option("--include-deprecated", help="List deprecated models too.")
    ] = False,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """List the models the gateway can route to."""
    with open_client(target, api_key, tls, timeout) as client:
        found = client.admin.list_models(provider, include_deprecated=include_deprecated)
    print_list(
        output,
        as_json=lambda: to_json(admin_pb2.ListModelsResponse(models=found)),
        csv_header=_MODEL_COLUMNS,
        table_header=["MODEL", "PROVIDER", "PROVIDER MODEL", "CONTEXT", "MAX OUTPUT", "CAPABILITIES"],
        rows=[_model_row(model) for model in found],
        empty="no models",
    )


@app.command()
def info(
    *,
    as_json: JsonOutput = False,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """Describe the gateway: version, build, APIs, providers and features."""
    with open_client(target, api_key, tls, timeout) as client:
        server = client.admin.server_info()
    if as_json:
        typer.echo(to_json(server))
        return
    started = ""
    if server.HasField("start_time"):
        started = server.start_time.ToDatetime().isoformat(timespec="seconds") + "Z"
    rows = [
        ("target", target),
        ("service", server.service_name),
        ("version", server.version),
        ("build", server.build_commit or "-"),
        ("instance", server.instance_id),
        ("started", started or "-"),
        ("providers", ", ".join(server.enabled_providers) or "-"),
        ("apis", ", ".join(server.api_versions) or "-"),
        ("features", ", ".join(server.features) or "-"),
    ]
    for key, value in rows:
        typer.echo(f"{key + ':':<11}{value}")


@app.command()
def migrate(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")] = None,
    revision: Annotated[str, typer.Option("--revision", help="Target Alembic revision.")] = "head",
) -> None:
    """Apply the database migrations (storage.url, default SQLite under storage.data_dir)."""
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def run() -> str | None:
        database = Database.from_settings(settings.storage)
        try:
            await database.migrate(revision)
            return await database.current_revision()
        finally:
            await database.aclose()

    current = asyncio.run(run())
    url = make_url(settings.storage.database_url()).render_as_string(hide_password=True)
    typer.echo(f"{url}: at revision {current}")


def main() -> None:
    """Console-script entry point."""
    app()
