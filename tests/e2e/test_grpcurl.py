"""End to end: start the server as `make run` does (the `homa serve` console script, embedded
defaults) and drive it with grpcurl, a real client that knows nothing of Python."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
GRPCURL = str(BIN / "grpcurl")
HOMA = str(BIN / "homa")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("e2e") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMA_") and k != "OPENAI_API_KEY"}
    env["HOMA_SERVER__PORT"] = str(port)
    log = log_path.open("w")
    process = subprocess.Popen([HOMA, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [GRPCURL, "-plaintext", target, "grpc.health.v1.Health/Check"], capture_output=True, text=True
            )
            if probe.returncode == 0 and '"SERVING"' in probe.stdout:
                break
            if process.poll() is not None:
                pytest.fail(f"server exited: {log_path.read_text()}")
            time.sleep(0.2)
        else:
            pytest.fail("server did not become healthy in 30 s")
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        assert code == 0, f"server did not exit cleanly on SIGTERM (exit {code}): {log_path.read_text()}"


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=30)


def test_list_shows_six_services_health_and_reflection(served: str) -> None:
    result = grpcurl("-plaintext", served, "list")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {
        "homa.chat.v1.ChatService",
        "homa.image.v1.ImageService",
        "homa.audio.v1.AudioService",
        "homa.embedding.v1.EmbeddingService",
        "homa.admin.v1.AdminService",
        "homa.batch.v1.BatchService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services


def test_describe_a_service(served: str) -> None:
    result = grpcurl("-plaintext", served, "describe", "homa.chat.v1.ChatService")
    assert result.returncode == 0, result.stderr
    for rpc in ("Complete", "StreamComplete", "Converse", "CountTokens"):
        assert f"rpc {rpc}" in result.stdout


def test_stream_a_mock_completion(served: str) -> None:
    body = json.dumps(
        {"model": "mock/echo", "messages": [{"role": "ROLE_USER", "parts": [{"text": "stream me please"}]}]}
    )
    result = grpcurl("-plaintext", "-d", body, served, "homa.chat.v1.ChatService/StreamComplete")
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    events, text = [], result.stdout.strip()
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    assert "route" in events[0]
    assert "finish" in events[-1]
    assert sum("finish" in e for e in events) == 1
    assert "".join(e["delta"].get("text", "") for e in events if "delta" in e) == "echo: stream me please"


def test_error_details_reach_grpcurl(served: str) -> None:
    body = json.dumps({"model": "mock/echo", "messages": []})
    result = grpcurl("-plaintext", "-format-error", "-d", body, served, "homa.chat.v1.ChatService/Complete")
    assert result.returncode != 0
    status = json.loads(result.stderr)
    assert status["code"] == 3  # INVALID_ARGUMENT
    types = {d["@type"].rsplit("/", 1)[-1]: d for d in status["details"]}
    assert types["google.rpc.ErrorInfo"]["reason"] == "INVALID_REQUEST"
    assert types["google.rpc.BadRequest"]["field_violations"][0]["field"] == "messages"


def test_unimplemented_rpc_names_itself(served: str) -> None:
    result = grpcurl("-plaintext", "-d", '{"items": []}', served, "homa.batch.v1.BatchService/CreateBatch")
    assert result.returncode != 0
    assert "Unimplemented" in result.stderr
    assert "homa.batch.v1.BatchService/CreateBatch" in result.stderr
