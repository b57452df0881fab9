"""Cache-hit latency: what a response-cache hit costs, in process and end to end.

    .venv/bin/python -m bench.cache_hit [--calls 3000] [--requests 2000] [--no-e2e]

1. In process (no gRPC), per backend (memory, redis, memcached, filesystem): a sequential loop of
   `--calls` hits = plan (key hashing) + lookup + decode + replay of a stored unary answer, on uvloop.
   Redis (127.0.0.1:6379) and Memcached (127.0.0.1:11211) must be running; their keys go under a fresh
   namespace.
2. End to end (needs h2load, like `make bench`): the mock OpenAI upstream and one gateway worker with
   the memory cache; h2load at concurrency 1 sends `--requests` identical Complete and StreamComplete
   calls with `options.cache` OFF (the provider path) and then ON (every call after the first is a
   hit). The harness checks the mock saw no request during the hit runs.

Reports p50 / p99 and writes bench/results/cache.json. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import h2load, payloads
from bench.gateway import mock_stats, start_gateway, verify
from bench.processes import BenchError, Child, free_port, start_mock
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.policy.cache.backends.base import CacheBackend, Invalidation
from homa_server.policy.cache.backends.filesystem import FilesystemBackend
from homa_server.policy.cache.backends.memcached import MemcachedBackend
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.backends.redis import RedisBackend
from homa_server.policy.cache.flow import complete_through_cache
from homa_server.policy.cache.service import ResponseCache
from homa_server.settings import CacheSettings

RESULTS = Path(__file__).resolve().parent / "results" / "cache.json"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def _answer() -> chat_pb2.CompleteResponse:
    text = "Pooling reuses warm connections, so each call skips TCP and TLS set-up. " * 3
    return chat_pb2.CompleteResponse(
        id="chatcmpl-bench",
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text=text)]),
        finish_reason=usage_pb2.FINISH_REASON_STOP,
        usage=usage_pb2.Usage(input_tokens=24, output_tokens=48),
        route=usage_pb2.Route(provider=payloads.PROVIDER, model=payloads.UPSTREAM_MODEL, attempt=1),
    )


def _backend(kind: str, directory: Path) -> CacheBackend:
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        return RedisBackend("redis://127.0.0.1:6379/0", namespace, 1.0)
    if kind == "memcached":
        return MemcachedBackend("127.0.0.1:11211", namespace, 1.0)
    if kind == "filesystem":
        return FilesystemBackend(directory)
    return MemoryBackend(10_000, 64 << 20)


def _summary(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


async def _in_process(kind: str, calls: int, directory: Path) -> dict[str, Any]:
    cache = ResponseCache(_backend(kind, directory), CacheSettings(enabled=True, timeout_s=1.0))
    request = payloads.complete_request()
    provider_calls = 0

    async def call() -> chat_pb2.CompleteResponse:
        nonlocal provider_calls
        provider_calls += 1
        return _answer()

    async def once() -> None:
        await complete_through_cache(
            cache, request, tenant="bench", model=payloads.MODEL, recorder=None, call=call
        )

    try:
        for _ in range(200):
            await once()
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await once()
            samples.append((time.perf_counter() - started) * 1e6)
        if provider_calls != 1:
            raise BenchError(f"{kind}: {provider_calls} provider calls, expected 1 (cache not hit)")
        return {"backend": kind, "calls": calls, "errors": cache.errors, **_summary(samples)}
    finally:
        await cache.invalidate(Invalidation("all"))
        await cache.aclose()


def _body(work: Path, name: str, stream: bool, mode: int) -> Path:
    request = payloads.stream_request() if stream else payloads.complete_request()
    request.options.cache = mode  # type: ignore[assignment]
    path = work / f"{name}.bin"
    path.write_bytes(payloads.grpc_frame(request))
    return path


def _run(binary: str, work: Path, url: str, body: Path, requests: int) -> h2load.LoadResult:
    load = h2load.Load(url=url, body=body, headers=GRPC_HEADERS, clients=1, requests=requests)
    result = h2load.run(binary, load, work / f"{body.stem}-{time.monotonic_ns()}.tsv")
    if result.succeeded != requests or result.failed or result.errored:
        raise BenchError(f"h2load run failed: {result}")
    return result


def _e2e(work: Path, requests: int) -> list[dict[str, Any]]:
    binary = h2load.h2load_path()
    if binary is None:
        print("h2load not installed (apt-get install nghttp2-client): end-to-end part skipped")
        return []
    mock_port, gateway_port = free_port(), free_port()
    children: list[Child] = []
    try:
        children.append(start_mock(work, mock_port, stream_chunks=16))
        config = work / "gateway.yaml"
        config.write_text(
            "logging: {level: WARNING}\n"
            "cache: {enabled: true, backend: memory}\n"
            "providers:\n"
            f'  {payloads.PROVIDER}: {{kind: openai, base_url: "http://127.0.0.1:{mock_port}/v1", '
            f'api_key: "sk-bench", models: [{payloads.UPSTREAM_MODEL}]}}\n'
        )
        children.append(start_gateway(work, config, gateway_port, 30.0))
        verify(gateway_port)
        figures = []
        for rpc, path in (("unary", "Complete"), ("stream", "StreamComplete")):
            url = f"http://127.0.0.1:{gateway_port}/homa.chat.v1.ChatService/{path}"
            off = _body(work, f"{rpc}-off", rpc == "stream", chat_pb2.CACHE_MODE_OFF)
            on = _body(work, f"{rpc}-on", rpc == "stream", chat_pb2.CACHE_MODE_ON)
            _run(binary, work, url, off, 300)  # warm-up
            provider = _run(binary, work, url, off, requests)
            _run(binary, work, url, on, 1)  # the miss that stores the answer
            before = mock_stats(mock_port)
            hits = _run(binary, work, url, on, requests)
            after = mock_stats(mock_port)
            upstream = sum(after[k] - before[k] for k in ("unary", "stream"))
            if upstream:
                raise BenchError(f"{rpc}: the mock saw {upstream} requests during the hit run")
            figures.append(
                {
                    "rpc": path,
                    "requests": requests,
                    "provider_p50_ms": round(provider.percentile_ms(50), 3),
                    "provider_p99_ms": round(provider.percentile_ms(99), 3),
                    "hit_p50_ms": round(hits.percentile_ms(50), 3),
                    "hit_p99_ms": round(hits.percentile_ms(99), 3),
                }
            )
        return figures
    finally:
        for child in reversed(children):
            child.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000, help="in-process hits per backend")
    parser.add_argument("--requests", type=int, default=2000, help="h2load calls per end-to-end run")
    parser.add_argument("--no-e2e", action="store_true", help="only the in-process part")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="homa-bench-cache-") as tmp:
        work = Path(tmp)
        in_process = []
        for kind in ("memory", "redis", "memcached", "filesystem"):
            figures = uvloop.run(_in_process(kind, args.calls, work / "fs-cache"))
            in_process.append(figures)
            print(
                f"in process  {kind:<11} hit p50 {figures['p50_us']:>8.1f} µs"
                f"   p99 {figures['p99_us']:>8.1f} µs"
            )
        e2e = [] if args.no_e2e else _e2e(work, args.requests)
        for row in e2e:
            print(
                f"end to end  {row['rpc']:<15} provider p50 {row['provider_p50_ms']:.3f} ms "
                f"p99 {row['provider_p99_ms']:.3f} ms | hit p50 {row['hit_p50_ms']:.3f} ms "
                f"p99 {row['hit_p99_ms']:.3f} ms"
            )
    RESULTS.write_bytes(
        orjson.dumps(
            {
                "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "in_process": in_process,
                "end_to_end_c1": e2e,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
