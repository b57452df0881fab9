"""`homa keys create|list|get|revoke`: manage Homa API keys.

The commands call the gateway's Admin RPCs (`--target`, `--api-key` of a key holding
`admin:write` / `admin:read`). With `--local`, `create`, `list` and `revoke` work directly on the
database of the settings file given with `--config` (bootstrap of the first admin key; audited with
actor "cli"). `create` prints the secret once: it cannot be shown again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from google.protobuf import timestamp_pb2

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_client import DEFAULT_TARGET
from homa_server.commands.common import (
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
from homa_server.errors import GatewayError
from homa_server.settings import SettingsError

if TYPE_CHECKING:
    from homa_server.auth.principal import Principal
    from homa_server.rpc.admin_keys import ApiKeyManager

keys_app = typer.Typer(help="Manage Homa API keys.", no_args_is_help=True)

Local = Annotated[
    bool, typer.Option("--local", help="Work directly on the configured database instead of a gateway.")
]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (with --local).")]

_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STATES: Final = {
    admin_pb2.API_KEY_STATE_ACTIVE: "active",
    admin_pb2.API_KEY_STATE_REVOKED: "revoked",
    admin_pb2.API_KEY_STATE_EXPIRED: "expired",
}
_HEADER: Final = ["ID", "NAME", "TENANT", "STATE", "PREFIX", "SCOPES", "MODELS", "CREATED", "EXPIRES"]


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `3600s`, `2w` (one number and unit) as a timedelta.

    Raises:
        typer.BadParameter: anything else, or zero.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter("expected a positive duration such as 30d, 12h, 90m or 3600s")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--label")
        labels[key] = value
    return labels


def _time(ts: timestamp_pb2.Timestamp, present: bool) -> str:
    if not present:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(key: admin_pb2.ApiKey) -> list[str]:
    return [
        key.api_key_id,
        key.name,
        key.tenant,
        _STATES.get(key.state, "unknown"),
        key.secret_prefix,
        ",".join(key.scopes) or "-",
        ",".join(key.allowed_models) or "*",
        _time(key.create_time, key.HasField("create_time")),
        _time(key.expire_time, key.HasField("expire_time")),
    ]


def _local() -> Callable[..., Any]:
    """`run_local`, imported on use so that the client commands do not load the server stack."""
    from homa_server.commands.keys_local import run_local  # noqa: PLC0415

    return run_local


def _local_failure(error: GatewayError | SettingsError) -> typer.Exit:
    if isinstance(error, GatewayError):
        typer.echo(f"error: {error.reason}: {error.message}", err=True)
        for violation in error.field_violations:
            typer.echo(f"  {violation.field}: {violation.description}", err=True)
    else:
        typer.echo(str(error), err=True)
    return typer.Exit(1 if isinstance(error, GatewayError) else 2)


@keys_app.command()
def create(
    *,
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")],
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="Scope to grant (repeat), e.g. chat:write.")
    ],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant (default: the caller's own).")] = "",
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Allowed model or glob (repeat); default all.")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 30d or 12h.")
    ] = None,
    owner: Annotated[str, typer.Option("--owner", help="Person or service responsible.")] = "",
    label: Annotated[list[str] | None, typer.Option("--label", help="Label key=value (repeat).")] = None,
    as_json: JsonOutput = False,
    local: Local = False,
    config: Config = None,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """Create an API key and print its secret (shown only once)."""
    key = admin_pb2.ApiKey(
        name=name,
        owner=owner,
        tenant=tenant,
        scopes=scope,
        allowed_models=model or [],
        labels=_labels(label or []),
    )
    if expires_in is not None:
        key.expire_time.FromDatetime(datetime.now(UTC) + parse_duration(expires_in))
    request = admin_pb2.CreateApiKeyRequest(api_key=key)
    if local:
        try:
            created = _local()(config, lambda manager, principal: manager.create(principal, request))
        except (GatewayError, SettingsError) as error:
            raise _local_failure(error) from None
    else:
        with open_client(target, api_key, tls, timeout) as client:
            created = client.admin.create_api_key(key)
    if as_json:
        typer.echo(to_json(created))
        return
    typer.echo(f"created {created.api_key.api_key_id} (tenant {created.api_key.tenant})", err=True)
    typer.echo(created.secret)
    typer.echo("store this secret now: it will not be shown again", err=True)


@keys_app.command("list")
def list_keys(
    *,
    filter_text: Annotated[
        str, typer.Option("--filter", help='AIP-160 filter, e.g. state = ACTIVE AND labels.team = "x".')
    ] = "",
    output: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.TABLE,
    local: Local = False,
    config: Config = None,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """List API keys, newest first (never their secrets)."""
    if local:

        async def every_page(manager: ApiKeyManager, principal: Principal) -> list[admin_pb2.ApiKey]:
            keys: list[admin_pb2.ApiKey] = []
            request = admin_pb2.ListApiKeysRequest(filter=filter_text, page_size=1000)
            while True:
                page = await manager.list_keys(principal, request)
                keys.extend(page.api_keys)
                if not page.next_page_token:
                    return keys
                request.page_token = page.next_page_token

        try:
            found: list[admin_pb2.ApiKey] = _local()(config, every_page)
        except (GatewayError, SettingsError) as error:
            raise _local_failure(error) from None
    else:
        with open_client(target, api_key, tls, timeout) as client:
            found = client.admin.list_api_keys(filter_text)
    print_list(
        output,
        as_json=lambda: to_json(admin_pb2.ListApiKeysResponse(api_keys=found)),
        csv_header=_HEADER,
        table_header=_HEADER,
        rows=[_row(key) for key in found],
        empty="no API keys",
    )


@keys_app.command()
def get(
    api_key_id: Annotated[str, typer.Argument(help="Key identifier (key_...).")],
    *,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """Show one API key as JSON (never its secret)."""
    with open_client(target, api_key, tls, timeout) as client:
        key = client.admin.get_api_key(api_key_id)
    typer.echo(to_json(key))


@keys_app.command()
def revoke(
    api_key_id: Annotated[str, typer.Argument(help="Key identifier (key_...).")],
    *,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = "",
    as_json: JsonOutput = False,
    local: Local = False,
    config: Config = None,
    target: Target = DEFAULT_TARGET,
    api_key: ApiKey = None,
    tls: Tls = False,
    timeout: Timeout = 30.0,
) -> None:
    """Revoke an API key for good (idempotent)."""
    if local:
        request = admin_pb2.RevokeApiKeyRequest(api_key_id=api_key_id, reason=reason)
        try:
            key = _local()(config, lambda manager, principal: manager.revoke(principal, request))
        except (GatewayError, SettingsError) as error:
            raise _local_failure(error) from None
    else:
        with open_client(target, api_key, tls, timeout) as client:
            key = client.admin.revoke_api_key(api_key_id, reason)
    if as_json:
        typer.echo(to_json(key))
    else:
        typer.echo(f"revoked {key.api_key_id}")
