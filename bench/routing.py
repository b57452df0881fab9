"""What routing and resilience add to one chat call, in process (no gRPC, no network).

    .venv/bin/python -m bench.routing [--calls 5000]

Each scenario runs `--calls` sequential unary calls on uvloop after a warm-up, against the
deterministic mock provider (`mock/echo`, no delay), and reports p50 / p99 / mean µs per call:
- `direct`: `MockProvider.complete_chat` called directly (the floor);
- `model`: `Router.plan` + `Router.complete` for `mock/echo` (an ad-hoc single-deployment route:
  breaker, admission without a limit, balancer statistics, trailers);
- `alias-weighted`: an alias over three weighted deployments (weighted order, capability filter);
- `alias-limited`: the same with `max_concurrency` on every deployment (admission slots taken and
  released on every call, never contended);
- `fallback`: an alias whose first deployment always fails (`mock/unavailable`): one failed attempt,
  its breaker bookkeeping (breaker disabled so it never opens), then the second deployment.

The router's added latency is the scenario minus `direct`. Writes bench/results/routing.json.
It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers.base import CallContext
from homa_server.providers.mock import MockProvider
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.attempts import Router
from homa_server.routing.resolver import ModelResolver
from homa_server.settings import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "routing.json"

_THREE = [
    {"provider": "mock", "model": "echo", "weight": 3},
    {"provider": "mock2", "model": "echo", "weight": 1},
    {"provider": "mock3", "model": "echo", "weight": 1},
]
ROUTES: dict[str, Any] = {
    "alias-weighted": {"strategy": "weighted", "deployments": _THREE},
    "alias-limited": {
        "strategy": "weighted",
        "deployments": [{**d, "max_concurrency": 100} for d in _THREE],
    },
    "fallback": {
        "deployments": [{"provider": "mock", "model": "unavailable"}, {"provider": "mock", "model": "echo"}]
    },
}


def _router() -> tuple[Router, MockProvider]:
    settings = load_settings(
        overrides={
            "providers": {"mock": {"kind": "mock"}, "mock2": {"kind": "mock"}, "mock3": {"kind": "mock"}},
            "routes": ROUTES,
            "resilience": {"breaker": {"enabled": False}},
        },
        environ={},
    )
    registry = ProviderRegistry.from_settings(settings)
    resolver = ModelResolver(registry, settings.default_model)
    provider = registry.get("mock")
    assert isinstance(provider, MockProvider)
    return Router.from_settings(settings, registry, resolver), provider


def _request(model: str) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model=model)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="Say hello in five words.")
    return request


async def _scenario(name: str, calls: int) -> dict[str, Any]:
    router, provider = _router()
    request = _request("mock/echo" if name in ("direct", "model") else name)
    ctx = CallContext(model="echo")
    samples: list[float] = []
    for i in range(calls + calls // 10):
        started = time.perf_counter()
        if name == "direct":
            await provider.complete_chat(request, ctx)
        else:
            plan = router.plan(request, 30.0)
            await router.complete(plan, request, "bench")
        if i >= calls // 10:  # the first tenth warms up
            samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "scenario": name,
        "calls": len(samples),
        "p50_us": round(samples[len(samples) // 2], 1),
        "p99_us": round(samples[int(len(samples) * 0.99)], 1),
        "mean_us": round(statistics.fmean(samples), 1),
    }


async def _main(calls: int) -> list[dict[str, Any]]:
    return [
        await _scenario(name, calls)
        for name in ("direct", "model", "alias-weighted", "alias-limited", "fallback")
    ]


def main() -> None:
    """Run every scenario, print the table, write bench/results/routing.json."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    rows = uvloop.run(_main(args.calls))
    floor = rows[0]["p50_us"]
    print("| scenario | calls | p50 µs | p99 µs | mean µs | added p50 µs |")
    print("|---|--:|--:|--:|--:|--:|")
    for row in rows:
        row["added_p50_us"] = round(row["p50_us"] - floor, 1)
        print(
            f"| {row['scenario']} | {row['calls']} | {row['p50_us']} | {row['p99_us']} | {row['mean_us']}"
            f" | {row['added_p50_us']} |"
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
