"""`homa serve --workers 2`: two processes share one port, both answer, SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from tests.e2e.test_grpcurl import _free_port

pytestmark = pytest.mark.e2e

HOMA = str(Path(sys.executable).parent / "homa")


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text().lower()
    except FileNotFoundError:
        return False


def _instance(target: str) -> str | None:
    # A fresh channel each time, so SO_REUSEPORT may hand the connection to either worker.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            info = admin_grpc.AdminServiceStub(channel).GetServerInfo(
                admin_pb2.GetServerInfoRequest(), timeout=2
            )
        except grpc.RpcError:
            return None
        return info.instance_id


def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMA_") and k != "OPENAI_API_KEY"}
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [HOMA, "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            target = f"127.0.0.1:{port}"
            seen: set[str] = set()
            deadline = time.monotonic() + 40
            while len(seen) < 2 and time.monotonic() < deadline:
                instance = _instance(target)
                if instance:
                    seen.add(instance)
                else:
                    time.sleep(0.2)
            assert len(seen) == 2, f"expected answers from 2 workers, got {seen}: {log_path.read_text()}"
            workers = _children(process.pid)
            assert len(workers) >= 2
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert code == 0, log_path.read_text()
    # Workers exit before the supervisor does; multiprocessing's helper processes (if any) follow
    # within moments of their parent's exit, so allow a short grace before calling them leaked.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]
