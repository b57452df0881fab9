"""Load benchmark of one gateway worker against the mock OpenAI upstream (`make bench`).

    .venv/bin/python -m bench.run [--quick] [--duration 10] [--concurrency 16,32,64] [--profile]

For unary `ChatService/Complete` and streaming `ChatService/StreamComplete` it measures, at
concurrency 1 (latency) and at each throughput concurrency:
- requests/s and p50/p99 latency through the gateway (h2load over h2c, gRPC framing);
- the same against the mock directly (h2load --h1, the JSON body the gateway's adapter sends), and
  the difference: the latency the gateway adds;
- gateway CPU time per request: utime+stime of the gateway process (all threads) over the run,
  divided by the requests completed;
- gateway memory: VmRSS after each run and VmHWM (peak RSS) at the end.

It prints a table and writes bench/results/latest.json. It reports the targets (added p50 at c=1,
unary requests/s, peak RSS) without asserting them. `--profile` instead runs the gateway under
cProfile during the unary and streaming throughput loads and writes bench/results/profile-*.txt.

Throughput runs are count-based, sized from the rate measured just before (warm-up or the previous
run) to last about `--duration` seconds: unlike h2load's `-D`, a count-based run never cancels calls
in flight at its end, so every call can be checked. Everything is bounded (request counts, subprocess
timeouts), runs on 127.0.0.1 only, and every subprocess is stopped on exit, including on errors and
Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import h2load, payloads
from bench.gateway import KnownGood, mock_stats, start_gateway, verify, write_config
from bench.processes import (
    BenchError,
    Child,
    children_cpu_seconds,
    cpu_seconds,
    free_port,
    host_cpu,
    memory_kib,
    spawn,
    start_mock,
    wait_for_port,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
README_START = "<!-- bench:latest:start -->"
README_END = "<!-- bench:latest:end -->"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
COMPLETE_PATH = "/homa.chat.v1.ChatService/Complete"
STREAM_PATH = "/homa.chat.v1.ChatService/StreamComplete"
TARGET_ADDED_P50_MS = 1.0
TARGET_UNARY_RPS = 1500.0
TARGET_PEAK_RSS_MB = 150.0


@dataclass(frozen=True)
class Options:
    duration_s: float
    latency_requests: int
    warmup_requests: int
    concurrency: tuple[int, ...]
    connections: int
    stream_chunks: int
    ready_timeout_s: float
    aiohttp_transport: bool = False
    inter_chunk_ms: float = 0.0


@dataclass
class Bench:
    """The running processes and files of one benchmark session."""

    h2load: str
    work: Path
    mock: Child | None  # None when measuring the grpc.aio floor server (no upstream)
    gateway: Child
    mock_port: int
    gateway_port: int
    known: KnownGood
    bodies: dict[str, Path] = field(default_factory=dict)
    rates: dict[tuple[bool, str], float] = field(default_factory=dict)  # (direct, rpc) -> last req/s
    runs: int = 0

    def gateway_url(self, rpc: str) -> str:
        return f"http://127.0.0.1:{self.gateway_port}{COMPLETE_PATH if rpc == 'unary' else STREAM_PATH}"

    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}/v1/chat/completions"

    def direct_headers(self) -> tuple[str, ...]:
        return ("content-type: application/json", "authorization: Bearer sk-bench")

    def log_file(self) -> Path:
        self.runs += 1
        return self.work / f"h2load-{self.runs}.tsv"


def _ms(value: float) -> float:
    return round(value, 3)


MAX_RUN_REQUESTS = 300_000


def _sized(bench: Bench, rpc: str, direct: bool, concurrency: int, opts: Options) -> int:
    """Requests for a throughput run of about `opts.duration_s` at the last measured rate."""
    rate = bench.rates.get((direct, rpc), 100.0)
    return max(20 * concurrency, min(MAX_RUN_REQUESTS, round(rate * opts.duration_s)))


def _load(
    bench: Bench, rpc: str, direct: bool, concurrency: int, opts: Options, requests: int | None
) -> h2load.Load:
    if requests is None:
        requests = _sized(bench, rpc, direct, concurrency, opts)
    # Bounded even if the rate collapses: 4x the planned time plus a margin.
    timeout = 60.0 + 4 * requests / bench.rates.get((direct, rpc), 100.0)
    if direct:
        # HTTP/1.1 has one request in flight per connection: same concurrency = that many connections.
        return h2load.Load(
            url=bench.direct_url(),
            body=bench.bodies[f"direct-{rpc}"],
            headers=bench.direct_headers(),
            clients=concurrency,
            requests=requests,
            http1=True,
            timeout_s=timeout,
        )
    connections = max(1, min(opts.connections, concurrency))
    if concurrency % connections:
        connections = 1
    return h2load.Load(
        url=bench.gateway_url(rpc),
        body=bench.bodies[rpc],
        headers=GRPC_HEADERS,
        clients=connections,
        streams=concurrency // connections,
        requests=requests,
        timeout_s=timeout,
    )


def _direct_run(bench: Bench, rpc: str, load: h2load.Load) -> dict[str, Any]:
    result = h2load.run(bench.h2load, load, bench.log_file())
    if result.succeeded == 0 or result.failed or result.errored or result.status_2xx != result.succeeded:
        raise BenchError(f"direct calls to the mock failed: {result}")
    if load.clients * load.streams > 1:
        bench.rates[(True, rpc)] = result.requests_per_s
    return _figures(result)


def _gateway_run(bench: Bench, rpc: str, load: h2load.Load) -> dict[str, Any]:
    """Run `load` against the gateway; check every call was a real gRPC success; add CPU and RSS."""
    mock = bench.mock
    before = mock_stats(bench.mock_port) if mock else {}
    host0, load0 = host_cpu(), children_cpu_seconds()
    cpu0, mock_cpu0 = cpu_seconds(bench.gateway.pid), cpu_seconds(mock.pid) if mock else 0.0
    result = h2load.run(bench.h2load, load, bench.log_file())
    cpu1, mock_cpu1 = cpu_seconds(bench.gateway.pid), cpu_seconds(mock.pid) if mock else 0.0
    host1, load1 = host_cpu(), children_cpu_seconds()
    after = mock_stats(bench.mock_port) if mock else {}
    if not bench.gateway.alive():
        raise BenchError(f"the gateway died during the run:\n{bench.gateway.log_tail(40)}")
    done = result.succeeded
    in_flight = load.clients * load.streams
    # A time-based run ends with up to `in_flight` calls cut off: answered 200 but not finished.
    if done == 0 or result.failed or result.errored or not done <= result.status_2xx <= done + in_flight:
        raise BenchError(f"calls through the gateway failed: {result}")
    # h2load counts HTTP 200 as success even when grpc-status != 0; a failed RPC has no DATA, so
    # the DATA received must match `done` correct answers (a few cut off at the end of -D runs).
    expected = bench.known.unary_data_bytes if rpc == "unary" else bench.known.stream_data_bytes
    cut_off = 0 if load.requests is not None else in_flight
    if not done * expected <= result.data_bytes <= (done + cut_off) * expected:
        raise BenchError(
            f"gRPC failures hidden behind HTTP 200: {result.data_bytes / done:.1f} DATA bytes per {rpc} "
            f"call, a correct answer has {expected}; gateway log:\n{bench.gateway.log_tail(20)}"
        )
    errors = bench.gateway.new_log_errors()
    if errors:
        raise BenchError(f"the gateway logged errors during the run:\n{errors}")
    upstream = after.get(rpc, 0) - before.get(rpc, 0)
    if mock and not done <= upstream <= done + in_flight:
        raise BenchError(f"the mock saw {upstream} {rpc} requests for {done} gateway calls")
    if in_flight > 1:
        bench.rates[(False, rpc)] = result.requests_per_s
    figures = _figures(result)
    memory = memory_kib(bench.gateway.pid)
    figures |= {
        "cpu_us_per_request": round((cpu1 - cpu0) / done * 1e6, 1),
        "gateway_cpu_cores": round((cpu1 - cpu0) / result.elapsed_s, 2),
        "mock_cpu_us_per_request": round((mock_cpu1 - mock_cpu0) / done * 1e6, 1),
        "rss_mb": round(memory["VmRSS"] / 1024, 1),
    }
    # Contention check: CPU used on the machine by anything but gateway, mock and h2load, and
    # hypervisor steal, both in cores over the run (this host may be shared).
    wall = host1["all"] - host0["all"] or 1.0
    cores = os.cpu_count() or 1
    ours = (cpu1 - cpu0) + (mock_cpu1 - mock_cpu0) + (load1 - load0)
    figures["other_cpu_cores"] = round(max(0.0, (host1["busy"] - host0["busy"]) - ours) * cores / wall, 2)
    figures["steal_cores"] = round((host1["steal"] - host0["steal"]) * cores / wall, 2)
    return figures


def _figures(result: h2load.LoadResult) -> dict[str, Any]:
    return {
        "requests": result.succeeded,
        "seconds": round(result.elapsed_s, 3),
        "requests_per_s": round(result.requests_per_s, 1),
        "p50_ms": _ms(result.percentile_ms(50)),
        "p90_ms": _ms(result.percentile_ms(90)),
        "p99_ms": _ms(result.percentile_ms(99)),
    }


def _scenario(
    bench: Bench, rpc: str, concurrency: int, opts: Options, requests: int | None
) -> dict[str, Any]:
    mode = "latency" if requests is not None else "throughput"
    label = f"{rpc} c={concurrency}"
    print(f"  {label:<16} {mode}: direct ...", end="", flush=True)
    direct = _direct_run(bench, rpc, _load(bench, rpc, True, concurrency, opts, requests))
    print(" gateway ...", end="", flush=True)
    load = _load(bench, rpc, False, concurrency, opts, requests)
    gateway = _gateway_run(bench, rpc, load)
    print(f" {gateway['requests_per_s']:.0f} req/s", flush=True)
    return {
        "rpc": "Complete" if rpc == "unary" else "StreamComplete",
        "kind": rpc,
        "mode": mode,
        "concurrency": concurrency,
        "h2load": {"connections": load.clients, "streams_per_connection": load.streams},
        "gateway": gateway,
        "direct": direct,
        "added_p50_ms": _ms(gateway["p50_ms"] - direct["p50_ms"]),
        "added_p99_ms": _ms(gateway["p99_ms"] - direct["p99_ms"]),
    }


def _warm_up(bench: Bench, opts: Options) -> None:
    count = opts.warmup_requests
    concurrency = max(opts.concurrency)
    for rpc in ("unary", "stream"):  # also measures the rates that size the throughput runs
        _direct_run(bench, rpc, _load(bench, rpc, True, concurrency, opts, count * 10))
        _gateway_run(bench, rpc, _load(bench, rpc, False, concurrency, opts, count))


def _start(h2load_bin: str, work: Path, opts: Options, children: list[Child], profile: Path | None) -> Bench:
    mock_port = free_port()
    mock = start_mock(work, mock_port, opts.stream_chunks, inter_chunk_ms=opts.inter_chunk_ms)
    children.append(mock)
    gateway_port = free_port()
    config = write_config(work / "homa.yaml", mock_port)
    gateway = start_gateway(work, config, gateway_port, opts.ready_timeout_s, profile, opts.aiohttp_transport)
    children.append(gateway)
    known = verify(gateway_port)
    bench = Bench(h2load_bin, work, mock, gateway, mock_port, gateway_port, known)
    files = {
        "unary": payloads.grpc_frame(payloads.complete_request()),
        "stream": payloads.grpc_frame(payloads.stream_request()),
        "direct-unary": payloads.direct_body(stream=False),
        "direct-stream": payloads.direct_body(stream=True),
    }
    for name, data in files.items():
        path = work / f"{name}.body"
        path.write_bytes(data)
        bench.bodies[name] = path
    return bench


def measure(h2load_bin: str, work: Path, opts: Options, children: list[Child]) -> dict[str, Any]:
    bench = _start(h2load_bin, work, opts, children, profile=None)
    idle = memory_kib(bench.gateway.pid)
    print(
        f"gateway pid {bench.gateway.pid} on :{bench.gateway_port}, mock on :{bench.mock_port}; "
        f"stream answers have {bench.known.stream_events} events"
    )
    _warm_up(bench, opts)
    scenarios = []
    for rpc in ("unary", "stream"):
        scenarios.append(_scenario(bench, rpc, 1, opts, opts.latency_requests))
        for concurrency in opts.concurrency:
            scenarios.append(_scenario(bench, rpc, concurrency, opts, None))
    final = memory_kib(bench.gateway.pid)
    return {
        "scenarios": scenarios,
        "gateway_memory": {
            "idle_rss_mb": round(idle["VmRSS"] / 1024, 1),
            "peak_rss_mb": round(final["VmHWM"] / 1024, 1),
            "final_rss_mb": round(final["VmRSS"] / 1024, 1),
        },
        "known_good": {
            "unary_response_data_bytes": bench.known.unary_data_bytes,
            "stream_response_data_bytes": bench.known.stream_data_bytes,
            "stream_events": bench.known.stream_events,
        },
    }


def profile(h2load_bin: str, work: Path, opts: Options, children: list[Child], top: int) -> list[Path]:
    """Profile the gateway under each throughput load; write the pstats reports to bench/results/."""
    out = work / "gateway.pstats"
    bench = _start(h2load_bin, work, opts, children, profile=out)
    _warm_up(bench, opts)
    concurrency = opts.concurrency[0]
    written = []
    for rpc in ("unary", "stream"):
        out.unlink(missing_ok=True)
        bench.gateway.signal(signal.SIGUSR1)
        time.sleep(0.2)
        figures = _gateway_run(bench, rpc, _load(bench, rpc, False, concurrency, opts, None))
        bench.gateway.signal(signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # dump_stats writes the file in one go, but give it a moment
        if not out.exists():
            raise BenchError(f"the profiler wrote no stats:\n{bench.gateway.log_tail()}")
        report = _profile_report(out, rpc, concurrency, figures, top)
        name = f"profile-{rpc}{'-aiohttp' if opts.aiohttp_transport else ''}"
        path = RESULTS_DIR / f"{name}.txt"
        path.write_text(report)
        out.replace(RESULTS_DIR / f"{name}.pstats")  # for `python -m pstats`
        print(report)
        written.append(path)
    return written


def _package(filename: str, function: str) -> str:
    """Which package a profiled function belongs to (C functions are listed as `builtins`)."""
    if filename == "~":
        if function.startswith("<method") and " of '" in function:
            return "C methods"  # e.g. protobuf SerializeToString, dict.get
        return "C functions"  # e.g. orjson.loads, isinstance
    if filename.startswith("<frozen importlib"):
        return "importlib (imports at run time)"
    path = filename.replace("\\", "/")
    if "/homa_server/" in path:
        return "homa_server." + path.split("/homa_server/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python" in path:
        rest = path.split("/lib/python", 1)[1].split("/", 2)
        return "stdlib " + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    return path.rsplit("/", 2)[-2] if "/" in path else path


def _by_package(stats: pstats.Stats, calls: int) -> str:
    own: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = _package(filename, function)
        own[key] = own.get(key, 0.0) + tottime
    total = sum(own.values()) or 1.0
    lines = ["| package / module | own CPU % | own CPU µs per call |", "|---|--:|--:|"]
    for key, seconds in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"| {key} | {seconds / total * 100:.1f} | {seconds / calls * 1e6:.0f} |")
    return "\n".join(lines) + "\n"


def _homa_functions(stats: pstats.Stats, calls: int, top: int) -> str:
    rows = []
    for (filename, line, function), (_cc, nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace("\\", "/")
        if "/homa_server/" in path:
            where = path.split("/homa_server/", 1)[1]
            rows.append((cumtime, tottime, nc, f"{where}:{line}({function})"))
    rows.sort(reverse=True)
    lines = ["| function | cumulative µs per call | own µs per call | profiler calls |", "|---|--:|--:|--:|"]
    for cumtime, tottime, nc, name in rows[:top]:
        lines.append(f"| {name} | {cumtime / calls * 1e6:.0f} | {tottime / calls * 1e6:.0f} | {nc} |")
    return "\n".join(lines) + "\n"


def _profile_report(stats_file: Path, rpc: str, concurrency: int, figures: dict[str, Any], top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=buffer)
    calls = figures["requests"]
    total: float = stats.total_tt  # type: ignore[attr-defined]
    buffer.write(
        f"# cProfile of one gateway worker, {rpc} load at concurrency {concurrency}: {calls} calls, "
        f"{figures['requests_per_s']:.0f} req/s under the profiler, "
        f"{figures['cpu_us_per_request']:.0f} process CPU-us per call (profiler overhead included).\n"
        f"# profiled time {total:.3f}s = {total / calls * 1e6:.0f} us per call "
        "(wall clock of the event-loop thread under a saturating load)\n\n"
    )
    buffer.write("## own CPU by package (function bodies only; C functions listed apart)\n\n")
    buffer.write(_by_package(stats, calls))
    buffer.write("\n## homa_server functions (coroutines count one profiler call per resumption)\n\n")
    buffer.write(_homa_functions(stats, calls, 30))
    stats.strip_dirs()
    buffer.write("\n## by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    buffer.write("\n## by own (total) time\n")
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def floor(h2load_bin: str, work: Path, opts: Options, children: list[Child]) -> dict[str, Any]:
    """Measure bench/floor_server.py (canned answers), without and with the gateway's interceptor."""
    from bench.floor_server import canned_events, canned_response  # noqa: PLC0415

    events = canned_events(opts.stream_chunks + 3)
    known = KnownGood(
        unary_data_bytes=5 + canned_response().ByteSize(),
        stream_data_bytes=sum(5 + e.ByteSize() for e in events),
        stream_events=len(events),
        completion_text="",
    )
    rows = []
    for variant, flags in (("grpc.aio floor", []), ("floor + GatewayInterceptor", ["--interceptor"])):
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port), "--stream-events"]
        child = spawn(
            "floor-server", [*argv, str(len(events)), *flags], work / "floor.log", cwd=BENCH_DIR.parent
        )
        children.append(child)
        wait_for_port(child, port, opts.ready_timeout_s)
        bench = Bench(h2load_bin, work, None, child, 0, port, known)
        bench.bodies["unary"] = work / "unary.body"
        bench.bodies["stream"] = work / "stream.body"
        bench.bodies["unary"].write_bytes(payloads.grpc_frame(payloads.complete_request()))
        bench.bodies["stream"].write_bytes(payloads.grpc_frame(payloads.stream_request()))
        for rpc in ("unary", "stream"):
            _gateway_run(
                bench, rpc, _load(bench, rpc, False, max(opts.concurrency), opts, opts.warmup_requests)
            )
            for concurrency in (1, *opts.concurrency):
                requests = opts.latency_requests if concurrency == 1 else None
                figures = _gateway_run(bench, rpc, _load(bench, rpc, False, concurrency, opts, requests))
                rows.append({"variant": variant, "rpc": rpc, "concurrency": concurrency, **figures})
                print(
                    f"  {variant:<28} {rpc:<6} c={concurrency:<4} {figures['requests_per_s']:>8,.0f} req/s "
                    f"p50 {figures['p50_ms']:.2f} ms  {figures['cpu_us_per_request']:>6,.0f} CPU-us/call",
                    flush=True,
                )
        child.stop()
    return {"floor": rows}


def _machine(h2load_bin: str) -> dict[str, Any]:
    import grpc  # noqa: PLC0415
    from google import protobuf  # noqa: PLC0415

    def version(module: str) -> str | None:
        try:
            return str(__import__(module).__version__)
        except (ImportError, AttributeError):
            return None

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf.__version__,
        "httpx": version("httpx"),
        "uvloop": version("uvloop"),
        "orjson": version("orjson"),
        "h2load": h2load.h2load_version(h2load_bin),
    }


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def table(results: dict[str, Any]) -> str:
    """The figures as a Markdown table (also readable on a terminal)."""
    header = (
        "| RPC | concurrency | gateway req/s | gateway p50 / p99 ms | direct p50 / p99 ms "
        "| added p50 / p99 ms | gateway CPU µs/req | gateway RSS MB |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for s in results["scenarios"]:
        g, d = s["gateway"], s["direct"]
        lines.append(
            f"| {s['rpc']} | {s['concurrency']} | {g['requests_per_s']:,.0f} "
            f"| {g['p50_ms']:.2f} / {g['p99_ms']:.2f} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} "
            f"| {s['added_p50_ms']:.2f} / {s['added_p99_ms']:.2f} | {g['cpu_us_per_request']:,.0f} "
            f"| {g['rss_mb']:.0f} |"
        )
    memory = results["gateway_memory"]
    lines.append("")
    lines.append(
        f"Gateway RSS: {memory['idle_rss_mb']:.0f} MB idle, peak (VmHWM) {memory['peak_rss_mb']:.0f} MB."
    )
    others = max(s["gateway"]["other_cpu_cores"] for s in results["scenarios"])
    steal = max(s["gateway"]["steal_cores"] for s in results["scenarios"])
    lines.append(
        f"Other load on the machine during the gateway runs: up to {others:.2f} cores busy with other "
        f"processes, {steal:.2f} cores of hypervisor steal"
        + (" — the machine was shared; expect lower throughput and higher latency." if others > 0.3 else ".")
    )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> str:
    """The targets and the measured figures, reported (never asserted)."""
    unary = [s for s in results["scenarios"] if s["kind"] == "unary"]
    latency = next((s for s in unary if s["concurrency"] == 1), None)
    best = max((s["gateway"]["requests_per_s"] for s in unary if s["mode"] == "throughput"), default=0.0)
    peak = results["gateway_memory"]["peak_rss_mb"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = ["Targets (reported, not asserted):"]
    if latency is not None:
        added = latency["added_p50_ms"]
        lines.append(
            f"- added p50 at concurrency 1 (unary) <= {TARGET_ADDED_P50_MS:g} ms: {added:.2f} ms "
            f"({verdict(added <= TARGET_ADDED_P50_MS)})"
        )
    ok = verdict(best >= TARGET_UNARY_RPS)
    lines.append(f"- unary requests/s on one worker >= {TARGET_UNARY_RPS:,.0f}: {best:,.0f} ({ok})")
    lines.append(
        f"- peak RSS <= {TARGET_PEAK_RSS_MB:g} MB: {peak:.0f} MB ({verdict(peak <= TARGET_PEAK_RSS_MB)})"
    )
    return "\n".join(lines)


def update_readme(markdown: str) -> None:
    text = README.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise BenchError(f"{README} has no {README_START} ... {README_END} block to update")
    README.write_text(text[: start + len(README_START)] + "\n" + markdown + "\n" + text[end:])


def _options(args: argparse.Namespace) -> Options:
    concurrency = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    if not concurrency or any(c < 1 or c > 1024 for c in concurrency):
        raise SystemExit("--concurrency takes a comma-separated list of numbers between 1 and 1024")
    if args.quick:
        return Options(
            3.0,
            500,
            300,
            concurrency,
            args.connections,
            args.stream_chunks,
            args.ready_timeout,
            args.aiohttp_transport,
            args.inter_chunk_ms,
        )
    if not 1 <= args.duration <= 120 or not 1 <= args.latency_requests <= 100_000:
        raise SystemExit("--duration must be within 1..120 s and --latency-requests within 1..100000")
    if not 1 <= args.warmup_requests <= 100_000:
        raise SystemExit("--warmup-requests must be within 1..100000")
    return Options(
        args.duration,
        args.latency_requests,
        args.warmup_requests,
        concurrency,
        args.connections,
        args.stream_chunks,
        args.ready_timeout,
        args.aiohttp_transport,
        args.inter_chunk_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="Homa load benchmark (one worker)."
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per throughput run (default 10)"
    )
    parser.add_argument("--latency-requests", type=int, default=2000, help="requests per concurrency-1 run")
    parser.add_argument(
        "--warmup-requests", type=int, default=500, help="warm-up requests per RPC and target"
    )
    parser.add_argument(
        "--concurrency", default="32", help="throughput concurrencies, e.g. 16,32,64 (default 32)"
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="HTTP/2 connections to the gateway (default 4)"
    )
    parser.add_argument("--stream-chunks", type=int, default=16, help="content events per streamed answer")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the gateway")
    parser.add_argument(
        "--quick", action="store_true", help="short runs (3 s, 500 latency requests): a smoke test"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON"
    )
    parser.add_argument("--update-readme", action="store_true", help="put the table into bench/README.md")
    parser.add_argument("--profile", action="store_true", help="cProfile the gateway instead of measuring")
    parser.add_argument("--profile-top", type=int, default=40, help="rows per profile listing")
    parser.add_argument(
        "--inter-chunk-ms",
        type=float,
        default=0.0,
        help="mock upstream pause between streamed events (default 0: the whole stream in one write)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="measure the grpc.aio floor server instead of the gateway"
    )
    parser.add_argument(
        "--aiohttp-transport",
        action="store_true",
        help="what-if: the gateway's httpx clients send through aiohttp (needs aiohttp installed)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory (logs, h2load files)"
    )
    args = parser.parse_args(argv)
    opts = _options(args)

    binary = h2load.h2load_path()
    if binary is None:
        print(h2load.INSTALL_HINT, file=sys.stderr)
        return 2
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="homa-bench-"))
    children: list[Child] = []
    started = time.monotonic()
    try:
        if args.profile:
            profile(binary, work, opts, children, args.profile_top)
            return 0
        if args.floor:
            print("grpc.aio floor: canned answers, no upstream (bench/floor_server.py)")
            measured_floor = floor(binary, work, opts, children)
            path = RESULTS_DIR / "floor.json"
            document = {"machine": _machine(binary), **measured_floor}
            path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
            print(f"written: {path}")
            return 0
        print(f"Homa bench: one gateway worker, h2load {binary}, work dir {work}")
        measured = measure(binary, work, opts, children)
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for child in reversed(children):
            child.stop()
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")
    results = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
        "machine": _machine(binary),
        "settings": {
            "workers": 1,
            "throughput_target_duration_s": opts.duration_s,
            "latency_requests": opts.latency_requests,
            "warmup_requests": opts.warmup_requests,
            "gateway_connections": opts.connections,
            "stream_content_chunks": opts.stream_chunks,
            "upstream_inter_chunk_ms": opts.inter_chunk_ms,
            "user_message_chars": len(payloads.USER_TEXT),
            "direct_baseline": "h2load --h1 to the mock, same concurrency (one request per connection)",
            "gateway_http_transport": "httpx over a bench aiohttp transport (what-if)"
            if opts.aiohttp_transport
            else "UpstreamClient (pooled aiohttp session behind httpx's API)",
        },
        **measured,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = table(results)
    print()
    print(markdown)
    print()
    print(targets(results))
    print(f"\nwritten: {args.out}")
    if args.update_readme:
        machine = results["machine"]
        update_readme(
            f"Measured {results['generated_at']} on {machine['nproc']} CPUs ({machine['cpu_model']}), "
            f"Python {machine['python']}, grpcio {machine['grpcio']}, {machine['h2load']}.\n\n"
            f"{markdown}\n\n{targets(results)}"
        )
        print(f"updated: {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
