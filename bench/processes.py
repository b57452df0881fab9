"""Subprocesses of the benchmark (mock upstream, gateway) and what /proc says about them.

Every child runs in its own session (process group) so that `Child.stop` can end it and anything it
started; the harness stops every child in a `finally`, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark cannot go on (a process did not start, a check failed)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A started subprocess with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def new_log_errors(self) -> str:
        """Lines logged at ERROR/CRITICAL level, or tracebacks, since the last call (empty if none)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
                self.log_offset = log.tell()
        except OSError:
            return ""
        markers = ('"level":"ERROR"', '"level":"CRITICAL"', " ERROR ", " CRITICAL ", "Traceback")
        return "\n".join(line for line in text.splitlines() if any(m in line for m in markers))

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it after `grace` seconds."""
        if self.process.poll() is None:
            _kill_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        _kill_group(self.pid, signal.SIGKILL)  # leftovers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(2)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the child is its session's leader, so its pgid is its pid


def spawn(name: str, argv: list[str], log_path: Path, cwd: Path | None = None) -> Child:
    """Start `argv` in a new session with stdout and stderr going to `log_path`."""
    env = dict(os.environ)
    env.pop("HOMA_CONFIG", None)
    env.pop("OPENAI_API_KEY", None)  # would add a real `openai` provider to the gateway
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    return Child(name, process, log_path)


def start_mock(
    log_dir: Path, port: int, stream_chunks: int, timeout: float = 15.0, inter_chunk_ms: float = 0.0
) -> Child:
    """Start `python -m bench.mock_upstream` and wait until it listens."""
    argv = [
        sys.executable,
        "-m",
        "bench.mock_upstream",
        "--port",
        str(port),
        "--stream-chunks",
        str(stream_chunks),
        "--inter-chunk-ms",
        str(inter_chunk_ms),
    ]
    child = spawn("mock-upstream", argv, log_dir / "mock.log", cwd=Path(__file__).resolve().parent.parent)
    wait_for_port(child, port, timeout)
    return child


def wait_for_port(child: Child, port: int, timeout: float) -> None:
    """Wait until 127.0.0.1:`port` accepts connections (raises if the child exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{child.name} did not listen on port {port} within {timeout:.0f}s:\n{child.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields after "pid (comm) "; field 3 is index 0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def host_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds since boot from /proc/stat: busy (all but idle/iowait/steal), steal."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {
        "busy": (user + nice + system + irq + softirq) / _CLOCK_TICKS,
        "steal": steal / _CLOCK_TICKS,
        "all": sum(fields[:8]) / _CLOCK_TICKS,
    }


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (the h2load runs)."""
    import resource  # noqa: PLC0415

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
