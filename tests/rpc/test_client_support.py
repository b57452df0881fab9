"""Gateways for client tests, and checks of the harness itself.

`ThreadedGateway` runs the in-process server (mock provider) on its own event loop in a background
thread, so blocking code (the sync client, the CLI through CliRunner) can call it from the test's
thread without blocking the server. Async tests use the server on the test's own loop instead
(`gateway_target` fixture in test_client_async.py).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

from homa_client import HomaClient
from homa_server.app import Gateway, start, stop
from homa_server.rpc.server import BuiltServer
from homa_server.settings import Settings
from tests.conftest import make_settings


def gateway_settings() -> Settings:
    """Settings of a hermetic test gateway: port 0, its own database, no provider keys from the
    environment."""
    return make_settings()


def closed_port_target() -> str:
    """A 127.0.0.1 address nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


class ThreadedGateway:
    """The in-process gateway served from a background thread with its own event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-gateway", daemon=True)
        self._gateway: Gateway | None = None
        self._built: BuiltServer | None = None
        self.target = ""

    def __enter__(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start(gateway_settings()), self._loop)
        self._gateway, self._built = future.result(timeout=30)
        self.target = f"127.0.0.1:{self._built.port}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._gateway is not None and self._built is not None:
                asyncio.run_coroutine_threadsafe(
                    stop(self._gateway, self._built, grace=0), self._loop
                ).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()


def test_threaded_gateway_serves_and_stops_cleanly() -> None:
    with ThreadedGateway() as gateway, HomaClient(gateway.target, timeout=10) as client:
        assert client.admin.server_info().service_name == "homa"
    assert not gateway._thread.is_alive()


def test_closed_port_target_refuses_connections() -> None:
    host, port = closed_port_target().split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex((host, int(port))) != 0
