"""The limiter's added latency per chat call: reserve before + settle after, in process and on Redis.

    .venv/bin/python -m bench.limiter [--calls 5000] [--redis redis://127.0.0.1:6379/0]

Scenarios (each a sequential loop of `--calls` reserve+settle pairs, after a warm-up, on uvloop):
- `off`: limits configured but none applies to the caller (the fast path every call takes when
  nothing is limited);
- `memory-rpm`: one requests-per-minute limit on the key, in-process backend (no token counting);
- `memory-full`: key, tenant and model limits with requests, tokens per minute and daily + monthly
  budgets, in-process backend (prompt counted with tiktoken, cost priced, 7 counters);
- `redis-rpm` / `redis-full`: the same on Redis (one Lua script to reserve, one to settle; the
  round trips to a local Redis dominate).

Reports p50 / p99 / mean µs per call (reserve + settle) and writes bench/results/limiter.json.
Limits are set high enough that nothing is refused. Redis keys go under a fresh prefix, deleted at
the end. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import uvloop
from redis.asyncio import Redis

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.auth.principal import Principal
from homa_server.policy.limits import Limiter
from homa_server.settings import LimitSettings

RESULTS = Path(__file__).resolve().parent / "results" / "limiter.json"
BIG = 10**12

PRINCIPAL = Principal(
    subject="key_bench",
    tenant="bench",
    scopes=frozenset({"chat:write"}),
    method="api_key",
    key_id="key_bench",
)


def _request() -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="openai/gpt-4o-mini", max_output_tokens=256)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(
        text="Summarise the benefits of connection pooling in two sentences, please."
    )
    return request


def _settings(kind: str, redis_url: str, prefix: str) -> LimitSettings:
    backend = "redis" if kind.startswith("redis") else "memory"
    values: dict[str, Any] = {
        "backend": backend,
        "redis": {"url": redis_url, "key_prefix": prefix, "timeout_s": 1.0},
    }
    if kind == "off":
        values["tenants"] = {"someone-else": {"requests_per_minute": 1}}
    elif kind.endswith("-rpm"):
        values["key"] = {"requests_per_minute": BIG}
    else:
        full = {"requests_per_minute": BIG, "tokens_per_minute": BIG}
        budgets = {"daily_cost_micros": BIG, "monthly_cost_micros": BIG}
        values.update(key={**full, **budgets}, tenant={**full, **budgets}, model=full)
    return LimitSettings.model_validate(values)


async def _scenario(kind: str, calls: int, redis_url: str) -> dict[str, Any]:
    prefix = f"bench:limits:{uuid.uuid4().hex}:"
    limiter = Limiter.from_settings(_settings(kind, redis_url, prefix))
    request = _request()
    samples: list[float] = []
    try:
        for i in range(calls + calls // 10):
            started = time.perf_counter()
            reservation = await limiter.reserve(
                request, PRINCIPAL, provider="openai", kind="openai", model="gpt-4o-mini"
            )
            await reservation.settle(tokens=120, cost_micros=80)
            if i >= calls // 10:  # the first tenth warms up (tokenizer load, connections)
                samples.append((time.perf_counter() - started) * 1e6)
    finally:
        await limiter.aclose()
        if kind.startswith("redis"):
            async with Redis.from_url(redis_url) as client:
                keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
                if keys:
                    await client.delete(*keys)
    samples.sort()
    return {
        "scenario": kind,
        "calls": len(samples),
        "p50_us": round(samples[len(samples) // 2], 1),
        "p99_us": round(samples[int(len(samples) * 0.99)], 1),
        "mean_us": round(statistics.fmean(samples), 1),
        "failures": limiter.stats.failures,
    }


async def _main(calls: int, redis_url: str) -> list[dict[str, Any]]:
    return [
        await _scenario(kind, calls, redis_url)
        for kind in ("off", "memory-rpm", "memory-full", "redis-rpm", "redis-full")
    ]


def main() -> None:
    """Run every scenario, print the table, write bench/results/limiter.json."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    rows = uvloop.run(_main(args.calls, args.redis))
    print("| scenario | calls | p50 µs | p99 µs | mean µs |")
    print("|---|--:|--:|--:|--:|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['calls']} | {row['p50_us']} | {row['p99_us']} | {row['mean_us']} |"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_bytes(
        orjson.dumps(
            {
                "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "rows": rows,
            },
            option=orjson.OPT_INDENT_2,
        )
    )


if __name__ == "__main__":
    main()
