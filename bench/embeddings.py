"""Embeddings benchmark: the local model's throughput on one core, and Embed through the gateway
against a mock upstream versus the mock called directly.

    .venv/bin/python -m bench.embeddings [--batches 20] [--requests 500] [--inputs 16] [--concurrency 16]

1. Local model (a child process with OPENBLAS_NUM_THREADS=1, so numpy uses one core): batches of 64
   sentences of 12-20 words through `MiniLM.encode`; reports sentences/s, tokens/s and ms per batch.
2. Gateway: a mock OpenAI `POST /v1/embeddings` (aiohttp, in its own process; precomputed base64
   answers of 1536 dimensions) and one gateway worker (`homa serve`) with an `openai` provider
   pointing at it. `--requests` sequential Embed calls of `--inputs` texts give the p50 / p99
   latency through the gateway; the same number of direct HTTP calls with the body the adapter
   sends give the direct latency; the difference is what the gateway adds. Then `--concurrency`
   concurrent callers give requests/s (the Python client shares the 2 CPUs with the gateway and
   the mock, so this is a lower bound). Health/Check on the same channel gives the floor of the
   Python gRPC client + grpc.aio round trip, which the direct HTTP baseline does not pay;
   `added_beyond_grpc_floor_p50_ms` subtracts it.

Writes bench/results/embeddings.json. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "embeddings.json"
DIMS = 1536
MODEL = "text-embedding-3-small"
_WORDS = [
    *[
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "gateways",
        "route",
        "requests",
        "to",
        "models",
        "that",
    ],
    *[
        "embed",
        "sentences",
        "into",
        "vectors",
        "for",
        "semantic",
        "search",
        "across",
        "many",
        "documents",
        "and",
        "languages",
    ],
]


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` deterministic sentences of 12-20 words."""
    out = []
    for i in range(count):
        n = 12 + (i * 7 + seed) % 9
        out.append(" ".join(_WORDS[(i * 3 + j * 5 + seed) % len(_WORDS)] for j in range(n)) + f" {i}.")
    return out


# -- 1. local model -----------------------------------------------------------------------------


def local_child(batches: int) -> dict[str, Any]:
    """Runs inside the one-core child process."""
    from homa_server.providers.local.assets import load_minilm, model_dir  # noqa: PLC0415

    started = time.perf_counter()
    model = load_minilm(model_dir(None), 256)
    load_s = time.perf_counter() - started
    batch = sentences(64)
    model.encode(batch)  # warm-up
    times, tokens = [], 0
    for i in range(batches):
        texts = sentences(64, seed=i + 1)
        t0 = time.perf_counter()
        _, used = model.encode(texts)
        times.append(time.perf_counter() - t0)
        tokens += used
    total = sum(times)
    return {
        "batch_size": 64,
        "batches": batches,
        "load_s": round(load_s, 3),
        "sentences_per_s": round(64 * batches / total, 1),
        "tokens_per_s": round(tokens / total, 1),
        "ms_per_batch_p50": round(statistics.median(times) * 1000, 1),
        "mean_tokens_per_sentence": round(tokens / (64 * batches), 1),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
    }


def run_local(batches: int) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "bench.embeddings", "--local-child", "--batches", str(batches)]
    done = subprocess.run(argv, env=env, capture_output=True, check=True, cwd=Path(__file__).parent.parent)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- 2. gateway vs direct ------------------------------------------------------------------------


def mock_main(port: int) -> None:
    """The mock upstream: OpenAI `POST /v1/embeddings` with precomputed base64 vectors."""
    from aiohttp import web  # noqa: PLC0415

    vector = base64.b64encode(bytes(range(256)) * (DIMS * 4 // 256)).decode()
    cache: dict[tuple[int, str], bytes] = {}

    async def embeddings(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        count = len(body["input"]) if isinstance(body["input"], list) else 1
        key = (count, body.get("encoding_format", "float"))
        if key not in cache:
            data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
            payload = {
                "object": "list",
                "data": data,
                "model": MODEL,
                "usage": {"prompt_tokens": count * 16, "total_tokens": count * 16},
            }
            cache[key] = json.dumps(payload).encode()
        return web.Response(body=cache[key], content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


async def _gateway_calls(port: int, requests: int, inputs: int, concurrency: int) -> dict[str, Any]:
    from grpc import aio  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    from homa.embedding.v1 import embedding_service_pb2 as pb  # noqa: PLC0415
    from homa.embedding.v1 import embedding_service_pb2_grpc as pb_grpc  # noqa: PLC0415

    request = pb.EmbedRequest(model=f"upstream/{MODEL}")
    request.inputs.extend(pb.EmbedInput(text=t) for t in sentences(inputs))
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        first = await stub.Embed(request)
        if len(first.embeddings) != inputs or first.dimensions != DIMS:
            raise RuntimeError(f"unexpected answer: {len(first.embeddings)} vectors of {first.dimensions}")
        for _ in range(50):
            await stub.Embed(request)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await stub.Embed(request)
            times.append(time.perf_counter() - t0)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest()
        for _ in range(50):
            await health.Check(check)
        floor = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await health.Check(check)
            floor.append(time.perf_counter() - t0)
        per_worker = max(1, requests // concurrency)

        async def worker() -> None:
            for _ in range(per_worker):
                await stub.Embed(request)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = per_worker * concurrency / (time.perf_counter() - t0)
    return {
        **_percentiles(times),
        "requests_per_s": round(rate, 1),
        "grpc_floor": _percentiles(floor),
    }


async def _direct_calls(port: int, requests: int, inputs: int) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    body = json.dumps({"model": MODEL, "input": sentences(inputs), "encoding_format": "base64"}).encode()
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                payload = json.loads(await response.read())
                [base64.b64decode(d["embedding"]) for d in payload["data"]]
            times.append(time.perf_counter() - t0)
    return _percentiles(times)


def run_gateway(requests: int, inputs: int, concurrency: int) -> dict[str, Any]:
    from bench.gateway import start_gateway  # noqa: PLC0415
    from bench.processes import free_port, spawn, wait_for_port  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="homa-bench-emb-"))
    mock_port, gateway_port = free_port(), free_port()
    repo = Path(__file__).resolve().parent.parent
    mock = spawn(
        "mock", [sys.executable, "-m", "bench.embeddings", "--mock", str(mock_port)], work / "mock.log", repo
    )
    gateway = None
    try:
        wait_for_port(mock, mock_port, 15)
        config = work / "homa.yaml"
        config.write_text(
            "logging: {level: WARNING}\n"
            f"storage: {{data_dir: {json.dumps(str(work / 'data'))}}}\n"
            "providers:\n"
            f"  upstream: {{kind: openai, api_key: sk-bench, "
            f'base_url: "http://127.0.0.1:{mock_port}/v1"}}\n'
        )
        gateway = start_gateway(work, config, gateway_port, 60)
        through = asyncio.run(_gateway_calls(gateway_port, requests, inputs, concurrency))
        direct = asyncio.run(_direct_calls(mock_port, requests, inputs))
    finally:
        if gateway is not None:
            gateway.stop()
        mock.stop()
    return {
        "inputs_per_request": inputs,
        "dimensions": DIMS,
        "requests": requests,
        "concurrency": concurrency,
        "gateway": through,
        "direct": direct,
        "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
        "added_p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3),
        # what the gateway itself adds: minus the Python gRPC client + grpc.aio round trip
        # (Health/Check on the same channel), which the direct HTTP baseline does not pay
        "added_beyond_grpc_floor_p50_ms": round(
            through["p50_ms"] - through["grpc_floor"]["p50_ms"] - direct["p50_ms"], 3
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 64 for the local model")
    parser.add_argument("--requests", type=int, default=500, help="sequential Embed calls (and direct calls)")
    parser.add_argument("--inputs", type=int, default=16, help="texts per Embed call")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent callers for requests/s")
    parser.add_argument("--local-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mock", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.local_child:
        print(json.dumps(local_child(args.batches)))
        return
    if args.mock:
        mock_main(args.mock)
        return
    results = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "local": run_local(args.batches),
        "gateway": run_gateway(args.requests, args.inputs, args.concurrency),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
