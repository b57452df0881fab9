"""The gateway under test: its YAML config, its process, readiness and a known-good call.

The gateway runs as `homa serve --config <yaml> --port P --workers 1` (one worker: with one worker
`homa serve` serves in its own process, so that pid is the one whose CPU and memory are read).
With a profile output or `aiohttp_transport` it runs through bench/profile_gateway.py instead (same
`homa_server.app.serve`, under a switchable cProfile and optionally with httpx over aiohttp).
"""

from __future__ import annotations

import http.client
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import payloads
from bench.processes import BenchError, Child, spawn
from homa.chat.v1 import chat_service_pb2_grpc

_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


def write_config(path: Path, mock_port: int) -> Path:
    """The gateway settings: one OpenAI provider pointing at the mock, warnings-only logging, its
    database in the run's directory, and no response cache (every call must reach the mock: the
    cache-hit path has its own benchmark, bench/cache_hit.py)."""
    path.write_text(
        "# written by bench/run.py\n"
        "logging: {level: WARNING}\n"
        f'storage: {{data_dir: "{path.parent / "gateway-data"}"}}\n'
        "cache: {enabled: false}\n"
        "providers:\n"
        f'  {payloads.PROVIDER}: {{kind: openai, base_url: "http://127.0.0.1:{mock_port}/v1", '
        f'api_key: "sk-bench", models: [{payloads.UPSTREAM_MODEL}]}}\n'
    )
    return path


def gateway_argv(config: Path, port: int, profile_out: Path | None, aiohttp_transport: bool) -> list[str]:
    if profile_out is not None or aiohttp_transport:
        out = profile_out or config.with_name("gateway.pstats")
        argv = [sys.executable, "-m", "bench.profile_gateway", "--config", str(config), "--port", str(port)]
        return [*argv, "--out", str(out), *(["--aiohttp-transport"] if aiohttp_transport else [])]
    script = Path(sys.executable).with_name("homa")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "homa_server"]
    return [*head, "serve", "--config", str(config), "--port", str(port), "--workers", "1"]


def start_gateway(
    log_dir: Path,
    config: Path,
    port: int,
    ready_timeout: float,
    profile_out: Path | None = None,
    aiohttp_transport: bool = False,
) -> Child:
    """Start the gateway and wait until grpc.health.v1 says SERVING.

    Raises:
        BenchError: the process exited or never became ready; the message has its log tail.
    """
    repo = Path(__file__).resolve().parent.parent
    child = spawn(
        "gateway",
        gateway_argv(config, port, profile_out, aiohttp_transport),
        log_dir / "gateway.log",
        cwd=repo,
    )
    deadline = time.monotonic() + ready_timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not child.alive():
                raise BenchError(f"the gateway exited with {child.process.returncode}:\n{child.log_tail(40)}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return child
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    child.stop()
    raise BenchError(f"the gateway was not SERVING within {ready_timeout:.0f}s:\n{child.log_tail(40)}")


@dataclass(frozen=True)
class KnownGood:
    """Sizes of correct answers, used to tell real successes from HTTP-200 gRPC failures."""

    unary_data_bytes: int  # DATA payload of one Complete answer (5-byte prefix + message)
    stream_data_bytes: int  # DATA payload of one whole StreamComplete answer
    stream_events: int
    completion_text: str


def verify(port: int, timeout: float = 10.0) -> KnownGood:
    """Call Complete and StreamComplete once with the Python client and check the answers.

    Raises:
        BenchError: a call failed or an answer is not what the mock sends.
    """
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        try:
            response = stub.Complete(payloads.complete_request(), timeout=timeout)
            events = list(stub.StreamComplete(payloads.stream_request(), timeout=timeout))
        except grpc.RpcError as exc:
            raise BenchError(f"a check call through the gateway failed: {exc}") from None
    text = "".join(p.text for p in response.message.parts)
    if not text:
        raise BenchError(f"Complete answered without text: {response}")
    streamed = "".join(e.delta.text for e in events if e.HasField("delta"))
    if streamed != text or not events or not events[-1].HasField("finish"):
        raise BenchError("StreamComplete did not relay the mock's stream (text differs or no finish event)")
    return KnownGood(
        unary_data_bytes=5 + response.ByteSize(),
        stream_data_bytes=sum(5 + e.ByteSize() for e in events),
        stream_events=len(events),
        completion_text=text,
    )


def mock_stats(port: int) -> dict[str, int]:
    """The mock upstream's request counters (`GET /__stats`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/__stats")
        stats: dict[str, int] = orjson.loads(connection.getresponse().read())
        return stats
    finally:
        connection.close()
