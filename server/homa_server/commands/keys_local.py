"""`homa keys ... --local`: API key administration directly on the configured database.

For bootstrapping (the first admin key of a deployment with authentication on) and recovery. The
same `ApiKeyManager` as the Admin RPCs is used, acting as an operator principal `cli` (every scope,
every tenant); each action is audited with actor "cli", written before the command returns. A
running gateway notices a key revoked here within `auth.api_key.cache_ttl_s`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from homa_server.auth.policy import ScopePolicy
from homa_server.auth.principal import Principal
from homa_server.auth.tenancy import CROSS_TENANT_SCOPE
from homa_server.rpc.admin_keys import ApiKeyManager
from homa_server.settings import load_settings
from homa_server.store.api_keys import ApiKeyRepository
from homa_server.store.audit import append_audit
from homa_server.store.database import Database
from homa_server.store.records import AuditRecord, UsageRecord

T = TypeVar("T")

CLI_ACTOR = "cli"
DEFAULT_TENANT = "default"


class _DirectRecorder:
    """Keeps the audit records of one command and writes them when it ends."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def usage(self, record: UsageRecord) -> None:
        """Not used by key administration."""

    def audit(self, record: AuditRecord) -> None:
        """Keep `record` for `write`."""
        self.records.append(record)

    async def write(self, database: Database) -> None:
        if self.records:
            async with database.begin() as connection:
                await append_audit(connection, [dataclasses.asdict(r) for r in self.records])
            self.records.clear()


def run_local(config: Path | None, action: Callable[[ApiKeyManager, Principal], Awaitable[T]]) -> T:
    """Run `action` with a manager over the configured database and the `cli` principal.

    Raises:
        SettingsError: invalid settings.
        GatewayError: the action failed (it is audited all the same).
    """
    settings = load_settings(config)

    async def run() -> T:
        database = Database.from_settings(settings.storage)
        recorder = _DirectRecorder()
        try:
            if settings.storage.migrate_on_start:
                await database.migrate()
            policy = ScopePolicy(settings.auth.scopes)
            principal = Principal(
                subject=CLI_ACTOR,
                tenant=DEFAULT_TENANT,
                scopes=policy.all_scopes | {CROSS_TENANT_SCOPE},
                method="none",
            )
            manager = ApiKeyManager(ApiKeyRepository(database), recorder, known_scopes=policy.all_scopes)
            try:
                return await action(manager, principal)
            finally:
                await recorder.write(database)
        finally:
            await database.aclose()

    return asyncio.run(run())
