"""Runs one gateway worker with cProfile switchable by signals (used by `python -m bench.run --profile`).

    python -m bench.profile_gateway --config homa.yaml --port 50051 --out gateway.pstats [--aiohttp-transport]

SIGUSR1 starts profiling, SIGUSR2 stops it and writes the stats to `--out` (pstats format), so the
profile covers the measured load only, not start-up or warm-up. cProfile sees the Python code of the
event-loop thread; time spent inside C extensions (grpc core, uvloop, orjson, upb) is charged to the
Python function that called into them, and grpc core's own threads are not seen at all. The timer is
cProfile's default wall clock (a CPU-time timer costs a system call per event and distorts more); the
harness profiles a saturating load, where the loop thread is almost never idle.

`--aiohttp-transport` is a what-if: provider HTTP clients are built with bench/aiohttp_transport.py
instead of httpcore (the adapters are unchanged; needs aiohttp installed).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop

from homa_server.app import serve
from homa_server.observability.logging import configure_logging
from homa_server.settings import load_settings


def _use_aiohttp_transport() -> None:
    """Make every provider's pooled httpx client send through aiohttp (what-if measurement)."""
    from bench.aiohttp_transport import AiohttpTransport  # noqa: PLC0415
    from homa_server.providers import _http  # noqa: PLC0415

    original = _http.build_client

    def build_client(settings: Any, *, headers: Any = None, transport: Any = None) -> Any:
        return original(
            settings, headers=headers, transport=transport or AiohttpTransport(settings.max_connections)
        )

    _http.build_client = build_client
    for module in list(sys.modules.values()):
        if getattr(module, "build_client", None) is original and module is not _http:
            module.build_client = build_client  # type: ignore[attr-defined]


async def _main(config: Path, port: int, out: Path) -> None:
    settings = load_settings(config, {"server.port": port, "server.workers": 1})
    configure_logging(settings.logging)
    profilers: list[cProfile.Profile] = []
    loop = asyncio.get_running_loop()

    def start() -> None:
        profilers[:] = [cProfile.Profile()]  # a fresh one: each SIGUSR1..SIGUSR2 window stands alone
        profilers[0].enable()

    def stop() -> None:
        if not profilers:
            return
        profiler = profilers.pop()
        profiler.disable()
        profiler.dump_stats(str(out))
        print(f"profile written to {out}", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, stop)
    await serve(settings)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_gateway")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--aiohttp-transport", action="store_true", help="what-if: httpx over aiohttp")
    args = parser.parse_args()
    if args.aiohttp_transport:
        _use_aiohttp_transport()
    uvloop.run(_main(args.config, args.port, args.out))


if __name__ == "__main__":
    main()
