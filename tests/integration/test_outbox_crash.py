"""A replica killed mid-run (SIGKILL) loses no usage of a call whose answer the client got.

`homa serve` runs as a subprocess with a long outbox flush interval, so most records are still only
in the segment file when the process is killed; replaying the segment must then give exactly one
usage row per answered call. Runs on both engines; bounded by timeouts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from sqlalchemy import select

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway, start, stop
from homa_server.store.database import Database
from homa_server.store.tables import usage_records
from tests.conftest import make_settings
from tests.storage import TEST_ENCRYPTION_KEY, scratch_dir

HOMA = str(Path(sys.executable).parent / "homa")
LISTENING = re.compile(r"homa listening on ([\d.]+):(\d+)")
CALLS = 30


def _config(directory: Path, db_url: str) -> Path:
    settings = {
        "server": {"host": "127.0.0.1", "port": 0, "grace_period_s": 0},
        "auth": {"mode": ["none"]},
        "logging": {"level": "WARNING"},
        "storage": {
            "url": db_url,
            "data_dir": str(directory),
            "migrate_on_start": False,
            # Long: records stay in the segment file, the database sees few or none before the kill.
            "outbox_flush_interval_s": 60,
            "outbox_batch_size": 10000,
        },
        "encryption": {"keys": [{"id": "test-1", "key": TEST_ENCRYPTION_KEY}]},
    }
    path = directory / "homa.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


class Served:
    """A `homa serve` subprocess and the address it printed."""

    def __init__(self, config: Path) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("HOMA_") and not k.endswith("_API_KEY")
        }
        self.process = subprocess.Popen(
            [HOMA, "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # also keeps the pipe from filling up
            self.output.append(line)
            if (found := LISTENING.search(line)) and self.address is None:
                self.address = f"{found[1]}:{found[2]}"
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> str:
        assert self._ready.wait(30), "server did not start"
        assert self.address, "".join(self.output)
        return self.address

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()


def _request(model: str, cls: Any = chat_pb2.CompleteRequest) -> Any:
    message = cls(model=model)
    message.messages.add(role=content_pb2.ROLE_USER).parts.add(text="count me")
    return message


def _drive(address: str) -> set[str]:
    """CALLS calls (successes, failures, streams); the request ids of those the client got an answer to."""
    answered: set[str] = set()
    with grpc.insecure_channel(address) as channel:
        stub = chat_grpc.ChatServiceStub(channel)
        for i in range(CALLS):
            request_id = f"crash-{i:03d}"
            metadata = (("x-request-id", request_id),)
            if i % 3 == 0:
                stub.Complete(_request("mock/echo"), metadata=metadata, timeout=10)
            elif i % 3 == 1:
                stream = _request("mock/echo", chat_pb2.StreamCompleteRequest)
                list(stub.StreamComplete(stream, metadata=metadata, timeout=10))
            else:  # the scripted failure: an answer too
                with pytest.raises(grpc.RpcError) as info:
                    stub.Complete(_request("mock/unavailable"), metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            answered.add(request_id)
    return answered


async def _rows(db_url: str) -> list[dict[str, Any]]:
    database = Database(db_url)
    try:
        async with database.begin() as connection:
            return [dict(r) for r in (await connection.execute(select(usage_records))).mappings()]
    finally:
        await database.aclose()


@pytest.mark.timeout(30)
async def test_sigkilled_replica_loses_no_usage(db_url: str) -> None:
    directory = scratch_dir()
    served = Served(_config(directory, db_url))
    try:
        address = served.wait_ready()
        answered = _drive(address)
    finally:
        served.kill()
    assert served.process.returncode == -signal.SIGKILL
    segments = list((directory / "outbox").glob("*.seg"))
    assert len(segments) == 1  # left behind by the killed process
    before = await _rows(db_url)
    assert len(before) < CALLS  # the kill really happened before the writer caught up

    # The next start on the same data directory replays the dead process's segment.
    gateway, built = await start(make_settings(**{"storage.url": db_url, "storage.data_dir": str(directory)}))
    try:
        assert isinstance(gateway, Gateway)
        rows = await _rows(db_url)
    finally:
        await stop(gateway, built, 0)
    by_request: dict[str, int] = {}
    for row in rows:
        by_request[row["request_id"]] = by_request.get(row["request_id"], 0) + 1
    assert set(by_request) == answered
    assert all(count == 1 for count in by_request.values())
    assert {row["status"] for row in rows} == {"completed", "failed"}
    assert list((directory / "outbox").glob("*.seg")) == []
