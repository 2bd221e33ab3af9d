"""What every side-by-side benchmark needs: ports, starting pinned processes, driving wrk,
reading a process's CPU time and peak RSS from /proc, and medians with their spread."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tidegate.testing.process import Proc

NGINX_MODULES = Path("/usr/lib/nginx/modules")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: Proc | None = None, timeout: float = 15.0) -> None:
    """Until something accepts on 127.0.0.1:port; exit with the process's output if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.popen.poll() is not None:
                sys.exit(f"{proc.argv[0]} exited:\n{proc.output()}")
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port} after {timeout}s")


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """argv run under `taskset -c CPUS` (children inherit it), or as is when cpus is None."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


# --- /proc ------------------------------------------------------------------------------------
def family(pid: int) -> list[int]:
    """The process and its direct children (nginx's workers under the master)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its direct children."""
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh at the current RSS (proc(5), clear_refs value 5), for each process."""
    for p in family(pid):
        # Not ours to reset: the peak then covers the process's whole life.
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")


def peak_rss(pid: int) -> int:
    """The largest VmHWM, in bytes, among the process and its children (the busy nginx worker)."""
    return max(_status_kib(p, "VmHWM") for p in family(pid)) * 1024


# --- wrk --------------------------------------------------------------------------------------
_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkResult:
    rps: float
    p50: float  # seconds
    p99: float
    problems: str  # socket errors and non-2xx answers, as wrk words them; "" if none


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _TIME[m.group(2)]


def wrk(
    url: str,
    connections: int,
    seconds: float,
    cpus: str | None = None,
    headers: Sequence[str] = (),
) -> WrkResult:
    """One wrk run (one thread, keep-alive) with its latency distribution."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(
        pinned([*argv, url], cpus), capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    res = parse_wrk(out)
    if res is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    return res


def parse_wrk(out: str) -> WrkResult | None:
    """The figures of wrk's `--latency` report, None if it is not one."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if rps is None or p50 is None or p99 is None:
        return None
    problems = "; ".join(
        line.strip() for line in out.splitlines() if "Socket errors" in line or "Non-2xx" in line
    )
    return WrkResult(float(rps.group(1)), _seconds(p50.group(1)), _seconds(p99.group(1)), problems)


# --- figures ----------------------------------------------------------------------------------
def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """The median and the spread (max - min) / median, 0 for a single value."""
    med = statistics.median(values)
    return med, ((max(values) - min(values)) / med if med else 0.0)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def hot_path() -> str:
    """Whether the gateway's hot path runs compiled (scripts/build_native.py) or as pure Python:
    the tidegate under test imports the same modules the same way as this process does."""
    import tidegate.http.plain

    return "pure Python" if tidegate.http.plain.__file__.endswith(".py") else "compiled with mypyc"


def machine() -> str:
    """CPU model, count and kernel, for the table's caption."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return f"{model or 'unknown CPU'}, {os.cpu_count()} CPUs, Linux {os.uname().release}"
