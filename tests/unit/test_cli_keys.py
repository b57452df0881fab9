"""`homa keys` through typer's CliRunner: against a running in-process gateway, and `--local`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from homa_server.app import start, stop
from homa_server.auth.api_keys import hash_secret
from homa_server.cli import app
from homa_server.commands.keys import parse_duration
from homa_server.store.tables import api_keys, audit_events
from tests.conftest import make_settings
from tests.rpc.test_client_support import ThreadedGateway
from tests.storage import TEST_ENCRYPTION_KEY, scratch_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with ThreadedGateway() as gateway:
        yield gateway.target


def homa(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"HOMA_API_KEY": "", "HOMA_TARGET": ""})


def test_parse_duration() -> None:
    assert parse_duration("30d").days == 30
    assert parse_duration("12h").total_seconds() == 43200
    assert parse_duration("90m").total_seconds() == 5400
    for bad in ("0d", "1y", "", "10", "-1d", "1d2h"):
        with pytest.raises(Exception, match="positive duration"):
            parse_duration(bad)


def test_create_list_get_revoke_against_a_gateway(target: str) -> None:
    created = homa(
        "keys", "create", "--name", "ci", "--tenant", "acme", "--scope", "chat:write", "--scope",
        "chat:read", "--model", "mock/*", "--expires-in", "30d", "--owner", "ops", "--label", "team=a",
        "-t", target,
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("homa_sk_")
    assert "not be shown again" in created.stderr
    key_id = created.stderr.split()[1]
    assert key_id.startswith("key_")

    as_json = homa("keys", "create", "--name", "j", "--scope", "chat:write", "--json", "-t", target)
    assert as_json.exit_code == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["secret"].startswith("homa_sk_")
    assert body["apiKey"]["secretPrefix"] == body["secret"][:12]

    table = homa("keys", "list", "-t", target)
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "ID", "NAME", "TENANT", "STATE", "PREFIX", "SCOPES", "MODELS", "CREATED", "EXPIRES",
    ]  # fmt: skip
    assert key_id in table.stdout
    assert secret not in table.stdout

    filtered = homa("keys", "list", "--filter", 'tenant = "acme"', "--format", "csv", "-t", target)
    assert filtered.exit_code == 0, filtered.stderr
    rows = list(csv.DictReader(io.StringIO(filtered.stdout)))
    assert [(r["ID"], r["STATE"], r["SCOPES"], r["MODELS"]) for r in rows] == [
        (key_id, "active", "chat:write,chat:read", "mock/*")
    ]

    got = homa("keys", "get", key_id, "-t", target)
    assert got.exit_code == 0, got.stderr
    assert json.loads(got.stdout)["labels"] == {"team": "a"}

    revoked = homa("keys", "revoke", key_id, "--reason", "rotation", "-t", target)
    assert revoked.exit_code == 0, revoked.stderr
    assert revoked.stdout == f"revoked {key_id}\n"
    listed = homa("keys", "list", "--format", "json", "--filter", "state = REVOKED", "-t", target)
    assert [k["apiKeyId"] for k in json.loads(listed.stdout)["apiKeys"]] == [key_id]


def test_errors_are_reported(target: str) -> None:
    bad = homa("keys", "create", "--name", "x", "--scope", "root", "-t", target)
    assert bad.exit_code == 1
    assert "INVALID_REQUEST" in bad.stderr
    assert "api_key.scopes[0]" in bad.stderr
    missing = homa("keys", "get", "key_nope", "-t", target)
    assert missing.exit_code == 1
    assert "RESOURCE_NOT_FOUND" in missing.stderr


def _config(directory: Path, **auth: object) -> Path:
    path = directory / "homa.yaml"
    settings = {
        "storage": {"data_dir": str(directory), "migrate_on_start": True},
        "encryption": {"keys": [{"id": "test-1", "key": TEST_ENCRYPTION_KEY}]},
        **({"auth": auth} if auth else {}),
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def test_local_bootstrap_on_a_sqlite_file() -> None:
    directory = scratch_dir()
    config = _config(directory)
    created = homa(
        "keys", "create", "--local", "--config", str(config), "--name", "root", "--tenant", "ops",
        "--scope", "admin:read", "--scope", "admin:write", "--scope", "tenants:all", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    body = json.loads(created.stdout)
    secret, key_id = body["secret"], body["apiKey"]["apiKeyId"]

    listed = homa("keys", "list", "--local", "--config", str(config), "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [k["apiKeyId"] for k in json.loads(listed.stdout)["apiKeys"]] == [key_id]

    async def use_it() -> Result:
        settings = make_settings(
            **{"storage.url": f"sqlite+aiosqlite:///{directory / 'homa.db'}", "auth.mode": ["api_key"]}
        )
        gateway, built = await start(settings)
        try:
            target = f"127.0.0.1:{built.port}"
            return await asyncio.to_thread(homa, "keys", "list", "-t", target, "--api-key", secret)
        finally:
            await stop(gateway, built, 0)

    remote = asyncio.run(use_it())
    assert remote.exit_code == 0, remote.stderr
    assert key_id in remote.stdout

    revoked = homa("keys", "revoke", key_id, "--local", "--config", str(config), "--reason", "done")
    assert revoked.exit_code == 0, revoked.stderr
    again = homa("keys", "revoke", key_id, "--local", "--config", str(config))
    assert again.exit_code == 0, again.stderr
    unknown = homa("keys", "revoke", "key_nope", "--local", "--config", str(config))
    assert unknown.exit_code == 1
    assert "RESOURCE_NOT_FOUND" in unknown.stderr

    engine = create_engine(f"sqlite:///{directory / 'homa.db'}")
    try:
        with engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.api_key_id == key_id)).one()
            events = conn.execute(select(audit_events).order_by(audit_events.c.sequence)).all()
    finally:
        engine.dispose()
    assert row.secret_hash == hash_secret(secret)
    assert row.revoked
    cli_events = [(e.action, e.actor, e.outcome) for e in events if e.actor == "cli"]
    assert [a for a, _, _ in cli_events] == [
        "api_key.create",
        "api_key.revoke",
        "api_key.revoke",
        "api_key.revoke",
    ]
    assert secret not in repr([tuple(e) for e in events])


def test_local_with_a_bad_config() -> None:
    result = homa("keys", "list", "--local", "--config", str(scratch_dir() / "missing.yaml"))
    assert result.exit_code == 2
    assert "config file not found" in result.stderr
