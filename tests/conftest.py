"""Shared fixtures: an in-process Homa server on 127.0.0.1, port 0, with the mock provider."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from homa_server.app import Gateway, start, stop
from homa_server.rpc.server import BuiltServer
from homa_server.settings import Settings, load_settings
from homa_server.store.database import Database
from tests.log_canaries import CapturingHandler, leaks
from tests.providers.fakes.openai_upstream import FakeOpenAI
from tests.providers.spec_validation import openai_api
from tests.storage import TEST_ENCRYPTION_KEY, drop_pg, fresh_pg_url, fresh_sqlite_url, scratch_dir


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: port 0, mock provider, no grace period, a fresh migrated SQLite database
    (unless `storage.url` is given) in its own directory, the fixed test encryption key, plus
    dotted overrides."""
    data_dir = scratch_dir()
    defaults: dict[str, Any] = {
        "server.port": 0,
        "server.grace_period_s": 0.0,
        "storage.data_dir": str(data_dir),
        "storage.migrate_on_start": False,
        "storage.outbox_flush_interval_s": 0.05,
        "encryption.keys": [{"id": "test-1", "key": TEST_ENCRYPTION_KEY}],
    }
    if "storage.url" not in overrides:
        defaults["storage.url"] = fresh_sqlite_url(data_dir)
    return load_settings(overrides={**defaults, **overrides}, environ={})


class RunningServer:
    """A started in-process server and a channel to it."""

    def __init__(self, gateway: Gateway, built: BuiltServer, channel: aio.Channel) -> None:
        self.gateway = gateway
        self.built = built
        self.channel = channel
        self.target = f"127.0.0.1:{built.port}"


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    gateway, built = await start(make_settings())
    channel = aio.insecure_channel(f"127.0.0.1:{built.port}")
    try:
        yield RunningServer(gateway, built, channel)
    finally:
        await channel.close()
        await stop(gateway, built, 0)


def status_details(error: aio.AioRpcError | grpc.RpcError) -> dict[str, Any]:
    """Decode the google.rpc.Status details of a failed call into a dict by detail type."""
    trailers = error.trailing_metadata() or ()
    raw = next((v for k, v in trailers if k == "grpc-status-details-bin"), None)  # type: ignore[union-attr]
    assert raw is not None, "no status details in trailing metadata"
    status = status_pb2.Status.FromString(raw)
    found: dict[str, Any] = {"status": status}
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.QuotaFailure,
            error_details_pb2.RequestInfo,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                assert cls.__name__ not in found, f"duplicate {cls.__name__}"
                found[cls.__name__] = message
    return found


@pytest.fixture(scope="session")
def openai_upstream() -> Iterator[FakeOpenAI]:
    """The session's fake OpenAI server (prefer `openai_fake`, which resets and checks it)."""
    openai_api()  # load the spec once, before the first request needs it
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def openai_fake(openai_upstream: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    openai_upstream.reset()
    openai_upstream.require_auth = True
    yield openai_upstream
    try:
        assert openai_upstream.validation_errors == [], "requests violated the OpenAI spec"
        assert openai_upstream.response_errors == [], "the fake sent replies that violate the spec"
    finally:
        openai_upstream.reset()
        openai_upstream.require_auth = True


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh migrated database on each engine (the test runs twice)."""
    if request.param == "sqlite":
        yield fresh_sqlite_url()
        return
    url = await fresh_pg_url()
    try:
        yield url
    finally:
        await drop_pg(url)


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """An open `Database` on each engine."""
    db = Database(db_url)
    try:
        yield db
    finally:
        await db.aclose()


@pytest.fixture(scope="session", autouse=True)
def _no_secrets_in_logs() -> Iterator[None]:
    """Fails the session (at teardown) if any canary secret reached a log record (tests/log_canaries.py)."""
    handler = CapturingHandler()
    homa = logging.getLogger("homa")
    root = logging.getLogger()
    previous = homa.level
    homa.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        homa.setLevel(previous)
    found = leaks(handler.lines)
    assert found == [], f"secrets in {len(handler.lines)} captured log lines: {found}"
