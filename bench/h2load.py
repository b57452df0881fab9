"""Runs h2load (nghttp2's compiled HTTP/2 and HTTP/1.1 load generator) and reads its results.

h2load speaks gRPC well enough for a benchmark: POST of a prebuilt length-prefixed message with
`content-type: application/grpc` and `te: trailers` over h2c (prior knowledge). It does not read
gRPC trailers, so an RPC that fails with HTTP 200 and `grpc-status != 0` counts as a success for
h2load; the harness therefore checks the DATA bytes received per request against the size of a
known-good answer (a failed RPC is trailers-only and carries no DATA).

Per-request latencies come from `--log-file` (one line per request: start time in µs since the
epoch, HTTP status, µs until the end of the response); percentiles are computed here.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "h2load was not found on PATH. It is nghttp2's load generator; install it with\n"
    "    sudo apt-get install nghttp2-client      (Debian/Ubuntu; `wrk` is optional)\n"
    "    brew install nghttp2                     (macOS)\n"
    "then run `make bench` again."
)

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?, .*?\((\d+)\) data")
_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")


def h2load_path() -> str | None:
    """Absolute path of h2load, or None when it is not installed."""
    return shutil.which("h2load")


def h2load_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return out.stdout.strip()


@dataclass
class LoadResult:
    """What one h2load run measured."""

    succeeded: int
    failed: int
    errored: int
    status_2xx: int
    data_bytes: int
    elapsed_s: float
    requests_per_s: float
    latencies_us: list[int] = field(repr=False, default_factory=list)

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in milliseconds."""
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
        return ordered[rank] / 1000.0


@dataclass(frozen=True)
class Load:
    """One h2load invocation."""

    url: str
    body: Path
    headers: tuple[str, ...]
    clients: int
    streams: int = 1
    requests: int | None = None  # count-based run ...
    duration_s: float | None = None  # ... or time-based run
    http1: bool = False
    timeout_s: float = 60.0

    def argv(self, binary: str, log_file: Path) -> list[str]:
        argv = [binary, "-t", "1", "-c", str(self.clients), "-m", str(self.streams), "-d", str(self.body)]
        for header in self.headers:
            argv += ["-H", header]
        if self.duration_s is not None:
            argv += ["-D", f"{self.duration_s:g}"]
        else:
            argv += ["-n", str(self.requests or 1)]
        if self.http1:
            argv.append("--h1")
        argv += ["--log-file", str(log_file), self.url]
        return argv


def run(binary: str, load: Load, log_file: Path) -> LoadResult:
    """Run h2load once and parse its summary and per-request log.

    Raises:
        RuntimeError: h2load failed or printed no summary.
    """
    limit = load.timeout_s + (load.duration_s or 0) + 30
    out = subprocess.run(
        load.argv(binary, log_file), capture_output=True, text=True, timeout=limit, check=False
    )
    text = out.stdout
    requests = _REQUESTS.search(text)
    statuses = _STATUS.search(text)
    traffic = _TRAFFIC.search(text)
    finished = _FINISHED.search(text)
    if out.returncode != 0 or not (requests and statuses and traffic and finished):
        raise RuntimeError(f"h2load failed (exit {out.returncode}):\n{text[-2000:]}\n{out.stderr[-2000:]}")
    amount, unit, rps = finished.groups()
    elapsed = float(amount) / {"us": 1e6, "ms": 1e3, "s": 1.0}[unit]
    latencies = []
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].startswith("2"):
            latencies.append(int(parts[2]))
    return LoadResult(
        succeeded=int(requests.group(4)),
        failed=int(requests.group(5)),
        errored=int(requests.group(6)),
        status_2xx=int(statuses.group(1)),
        data_bytes=int(traffic.group(3)),
        elapsed_s=elapsed,
        requests_per_s=float(rps),
        latencies_us=latencies,
    )
