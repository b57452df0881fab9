"""`homa secrets gen-key|seal`: encryption keys and sealed provider credentials.

`gen-key` prints a new random AES-256 key for `encryption.keys`; `seal --provider NAME` reads a
provider key on stdin and prints the sealed token (`hx1.…`) to put in `providers.NAME.api_key`,
sealed with the primary key of the configured keyring (see docs/security.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from homa_server.security.crypto import KeyringConfigError, generate_key
from homa_server.security.keyring_config import load_keyring
from homa_server.security.sealed_settings import seal_provider_credential
from homa_server.settings import SettingsError, load_settings

secrets_app = typer.Typer(help="Encryption keys and sealed provider credentials.", no_args_is_help=True)


@secrets_app.command("gen-key")
def gen_key(
    key_id: Annotated[str, typer.Option("--id", help="Identifier of the new key.")] = "k1",
) -> None:
    """Print a new random encryption key as a YAML entry for `encryption.keys`."""
    typer.echo(f"- id: {key_id}\n  key: {generate_key()}")


@secrets_app.command("seal")
def seal(
    provider: Annotated[str, typer.Option("--provider", "-p", help="Provider instance name.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")] = None,
) -> None:
    """Read a provider key on stdin; print it sealed for `providers.<provider>.api_key`."""
    try:
        settings = load_settings(config)
        keyring = load_keyring(settings.encryption, settings.storage.data_dir)
    except (SettingsError, KeyringConfigError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    secret = sys.stdin.readline().strip()
    if not secret:
        typer.echo("no key on stdin", err=True)
        raise typer.Exit(2)
    typer.echo(seal_provider_credential(keyring, provider, secret))
