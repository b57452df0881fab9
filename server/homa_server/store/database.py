"""One async engine per process: SQLite through aiosqlite (embedded default) or PostgreSQL via asyncpg.

Contract:
    * `Database.from_settings(storage)` creates the engine (no connection is opened yet); for SQLite
      the parent directory is created and every connection uses WAL, foreign keys and a busy timeout.
    * `migrate()` applies the Alembic migrations up to head (idempotent; safe when several processes
      start at once on PostgreSQL, which serialises them with an advisory lock).
    * `session()` yields an `AsyncSession`; `begin()` a connection inside a transaction.
    * `aclose()` disposes of the pool.
Repositories take a `Database` and always filter tenant-owned rows by tenant.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from homa_server.settings import StorageSettings
from homa_server.store.migrate import current, upgrade

Dialect = Literal["sqlite", "postgresql"]

# Advisory-lock key serialising migrations of concurrent replicas ("homa" in ASCII).
_MIGRATION_LOCK = 0x686F6D61


def now_us() -> int:
    """Current UTC time in epoch microseconds (the unit of every `*_us` column)."""
    return time.time_ns() // 1000


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str, *, pool_size: int = 10, statement_timeout_s: float = 30.0) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect: Dialect = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql"
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": statement_timeout_s}
        else:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={
                    "command_timeout": statement_timeout_s,
                    "server_settings": {"statement_timeout": str(int(statement_timeout_s * 1000))},
                },
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> Database:
        """The database named by `storage` (SQLite under `data_dir` by default)."""
        return cls(
            storage.database_url(),
            pool_size=storage.pool_size,
            statement_timeout_s=storage.statement_timeout_s,
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; commit explicitly (`async with db.session() as s: ...; await s.commit()`)."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success and rolled back on error."""
        async with self.engine.begin() as connection:
            yield connection

    async def migrate(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to `revision`."""
        async with self.engine.connect() as connection:
            if self.dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            try:
                await connection.run_sync(upgrade, revision)
                await connection.commit()
            finally:
                if self.dialect == "postgresql":
                    await connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                    await connection.commit()

    async def current_revision(self) -> str | None:
        """The Alembic revision the database is at (None for an empty database)."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(current)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def sync_url(connection: Connection) -> str:
    """The URL of a sync connection (for messages)."""
    return connection.engine.url.render_as_string(hide_password=True)
