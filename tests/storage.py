"""Databases for tests: a migrated SQLite template copied per use, and PostgreSQL databases cloned
from a migrated template on the local server (127.0.0.1:5432, trust auth; started by .ci/run).

Tests that touch storage run on both engines through the `db_url` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import create_engine

from homa_server.store.database import Database
from homa_server.store.migrate import upgrade

#: A fixed test key (32 bytes, base64): tests never generate keyring files.
TEST_ENCRYPTION_KEY = "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZi0wMTIzNDU="
PG_ADMIN_DSN = os.environ.get("HOMA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"

_ROOT = Path(tempfile.mkdtemp(prefix="homa-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)
#: Made once per session: "sqlite" -> template file path, "postgresql" -> template database name.
_TEMPLATES: dict[str, str] = {}


def scratch_dir() -> Path:
    """A new empty directory, removed when the test session ends."""
    path = _ROOT / uuid.uuid4().hex
    path.mkdir()
    return path


def sqlite_template() -> Path:
    """A SQLite file migrated to head, made once per session."""
    if "sqlite" not in _TEMPLATES:
        path = _ROOT / "template.db"
        engine = create_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            upgrade(connection)
        engine.dispose()
        _TEMPLATES["sqlite"] = str(path)
    return Path(_TEMPLATES["sqlite"])


def fresh_sqlite_url(directory: Path | None = None) -> str:
    """URL of a new migrated SQLite database (a copy of the template)."""
    target = (directory or scratch_dir()) / "homa.db"
    shutil.copyfile(sqlite_template(), target)
    return f"sqlite+aiosqlite:///{target}"


async def _pg_template() -> str:
    if "postgresql" not in _TEMPLATES:
        name = f"homa_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        database = Database(f"{PG_HOST_URL}/{name}")
        try:
            await database.migrate()
        finally:
            await database.aclose()
        _TEMPLATES["postgresql"] = name
        atexit.register(_drop_sync, name)
    return _TEMPLATES["postgresql"]


async def fresh_pg_url() -> str:
    """URL of a new migrated PostgreSQL database (cloned from the session template)."""
    template = await _pg_template()
    name = f"homa_t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return f"{PG_HOST_URL}/{name}"


async def drop_pg(url: str) -> None:
    """Drop a database made by `fresh_pg_url` (connections are terminated first)."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _drop_sync(name: str) -> None:
    asyncio.run(drop_pg(f"{PG_HOST_URL}/{name}"))
