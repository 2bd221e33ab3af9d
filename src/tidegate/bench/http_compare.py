"""tidegate's HTTP gateway beside nginx and HAProxy as reverse proxies, in one run on one machine.

Requests/s and latency: wrk (one thread, keep-alive, 50 connections) on a short fixed body, the
systems measured in turn — direct, tidegate, nginx, HAProxy, direct, tidegate, … — for several
rounds, so drift on a shared machine (other tenants, CPU frequency) spreads over all of them;
the table shows each system's median and the spread of its rounds. Transfers: one 100 MB
download and one 100 MB upload through each proxy (curl, one stream), alternating the same way,
with the proxy's peak RSS (VmHWM, reset before each transfer) during it.

TLS (unless --skip-tls): each proxy also terminates TLS on a second listener with one
self-signed P-256 certificate (http_systems.make_certificate), measured in the same alternating
rounds: keep-alive requests/s over TLS (wrk), new connections/s (wrk with `Connection: close`: a
TCP connection and a TLS handshake per request; wrk resumes its TLS session, as browsers do), and
full handshakes/s (`openssl s_time -new`, two clients, no resumption, no request), each with the
proxy's CPU use, since on a small machine the clients' own crypto may bound the rate.

HTTP/2 (unless --skip-h2): h2load, 10 clients x 10 concurrent streams each, with prior knowledge
(h2c) through each proxy, in the same alternating rounds, with the proxy's CPU use.

With two or more CPUs the proxies run pinned to CPU 0 and wrk, curl and the backend instances to
the others, the same for every system, so a proxy never competes with its own load for a core.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tidegate.bench import http_systems as systems
from tidegate.bench.http_systems import System
from tidegate.bench.kit import (
    cpu_seconds,
    hot_path,
    load_average,
    machine,
    median_spread,
    missing_tools,
    peak_rss,
    pinned,
    reset_peak_rss,
    wrk,
)

TOOLS = ("wrk", "nginx", "haproxy", "curl", "taskset", "openssl", "h2load")
PROXIES = ("tidegate", "nginx", "haproxy")


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the proxy's CPU use (1.0 = one core)
    down: list[float] = field(default_factory=list)  # bytes/s
    up: list[float] = field(default_factory=list)
    rss_down: list[int] = field(default_factory=list)
    rss_up: list[int] = field(default_factory=list)
    problems: set[str] = field(default_factory=set)
    h2: list[float] = field(default_factory=list)  # HTTP/2 requests/s (h2load)
    h2_cpu: list[float] = field(default_factory=list)
    # TLS: keep-alive requests/s, new connections/s, full handshakes/s, and the proxy's CPU use
    # during each (1.0 = one core)
    tls_rps: list[float] = field(default_factory=list)
    tls_new: list[float] = field(default_factory=list)
    tls_full: list[float] = field(default_factory=list)
    tls_rps_cpu: list[float] = field(default_factory=list)
    tls_new_cpu: list[float] = field(default_factory=list)
    tls_full_cpu: list[float] = field(default_factory=list)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of wrk (default 5)")
    p.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--transfer-mb", type=int, default=100, help="upload/download size, MB (default 100)")
    p.add_argument("--transfer-rounds", type=int, default=3, help="rounds of transfers (default 3)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes or threads of every proxy: tidegate workers, nginx worker_processes, HAProxy "
        "nbthread (default 1); above 1 nothing is pinned",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every process of the benchmark at this niceness (-10 on a shared machine, as root)",
    )
    p.add_argument("--skip-transfers", action="store_true", help="no 100 MB transfers")
    p.add_argument("--skip-h2", action="store_true", help="no HTTP/2 (h2load) rounds")
    p.add_argument("--h2-clients", type=int, default=10, help="h2load clients (default 10)")
    p.add_argument("--h2-streams", type=int, default=10, help="h2load streams per client (default 10)")
    p.add_argument("--skip-tls", action="store_true", help="no TLS rounds")
    p.add_argument("--only", choices=PROXIES, action="append", help="measure only these proxies")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")


def cpu_plan(no_pin: bool) -> tuple[str | None, str | None, str]:
    """(proxy CPUs, load CPUs, a sentence saying so)."""
    n = os.cpu_count() or 1
    if no_pin or n < 2:
        return None, None, "not pinned: every process shares all CPUs"
    load = "1" if n == 2 else f"1-{n - 1}"
    return "0", load, f"proxy pinned to CPU 0; wrk, curl and the two backends to CPU {load}"


def run(args: argparse.Namespace) -> int:
    missing = missing_tools(TOOLS)
    if missing:
        print(f"tidegate bench needs {', '.join(missing)} (bench/bootstrap installs them)", file=sys.stderr)
        return 2
    proxy_cpus, load_cpus, pin_note = cpu_plan(args.no_pin or args.workers > 1)
    wanted = args.only or list(PROXIES)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by everything started below
        pin_note += f"; all at nice {args.nice}"
    console = Console()
    console.print(f"machine: {machine()}; load average before: {load_average()}")
    console.print(pin_note)
    figures: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-http-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        size = args.transfer_mb * 1_000_000
        www = work / "www"
        www.mkdir()
        if not args.skip_transfers:
            _write_file(www / "big", size)
            _write_file(work / "upload", size)
        started: list[System] = []
        try:
            backends = [systems.start_backend(work, f"backend{i}", load_cpus) for i in (1, 2)]
            started += backends
            ports = [b.port for b in backends]
            tls = None if args.skip_tls else systems.make_certificate(work)
            starters: dict[str, Callable[[], System]] = {
                "tidegate": lambda: systems.start_tidegate(work, ports, proxy_cpus, args.workers, tls),
                "nginx": lambda: systems.start_nginx(work, ports, proxy_cpus, args.workers, tls),
                "haproxy": lambda: systems.start_haproxy(work, ports, proxy_cpus, args.workers, tls),
            }
            targets = [System("direct", None, ports[0])]
            for name in PROXIES:
                if name in wanted:
                    s = starters[name]()
                    started.append(s)
                    targets.append(s)
            figures = {s.name: Figures() for s in targets}
            for s in targets:  # warm up: connections, caches, the gateway's idle pool
                wrk(f"http://127.0.0.1:{s.port}/", args.connections, 1, load_cpus)
            for r in range(args.rounds):
                for s in targets:
                    _requests(s, args, load_cpus, figures[s.name])
                    f = figures[s.name]
                    console.print(
                        f"round {r + 1} {s.name:9s} {f.rps[-1]:9,.0f} req/s  p50 {f.p50[-1] * 1e3:6.2f} ms"
                        f"  p99 {f.p99[-1] * 1e3:6.2f} ms"
                        + (f"  proxy CPU {f.cpu[-1] * 100:3.0f}%" if s.proc is not None else "")
                    )
            if tls is not None:
                proxies = [s for s in targets if s.tls_port is not None]
                for s in proxies:
                    wrk(f"https://127.0.0.1:{s.tls_port}/", args.connections, 1, load_cpus)
                for r in range(args.rounds):
                    for s in proxies:
                        _tls(s, args, load_cpus, figures[s.name])
                        f = figures[s.name]
                        console.print(
                            f"TLS round {r + 1} {s.name:9s} {f.tls_rps[-1]:9,.0f} req/s keep-alive"
                            f" (CPU {f.tls_rps_cpu[-1] * 100:3.0f}%)  {f.tls_new[-1]:7,.0f} new conn/s"
                            f" (CPU {f.tls_new_cpu[-1] * 100:3.0f}%)  {f.tls_full[-1]:7,.0f} full handshakes/s"
                            f" (CPU {f.tls_full_cpu[-1] * 100:3.0f}%)"
                        )
            h2_targets = [s for s in targets if s.h2_port is not None]
            if not args.skip_h2 and h2_targets:
                for s in h2_targets:  # warm up
                    _h2(s, args, load_cpus, Figures(), 1)
                for r in range(args.rounds):
                    for s in h2_targets:
                        f = figures[s.name]
                        _h2(s, args, load_cpus, f, args.seconds)
                        console.print(
                            f"h2 round {r + 1} {s.name:9s} {f.h2[-1]:9,.0f} req/s"
                            f"  proxy CPU {f.h2_cpu[-1] * 100:3.0f}%"
                        )
            if not args.skip_transfers:
                for r in range(args.transfer_rounds):
                    for s in targets:
                        _transfers(s, work, load_cpus, figures[s.name])
                        f = figures[s.name]
                        console.print(
                            f"transfer round {r + 1} {s.name:9s} down {f.down[-1] / 1e6:7.0f} MB/s"
                            f"  up {f.up[-1] / 1e6:7.0f} MB/s"
                            + (
                                f"  peak RSS {f.rss_down[-1] / 2**20:.0f} / {f.rss_up[-1] / 2**20:.0f} MiB"
                                if s.proc is not None
                                else ""
                            )
                        )
        finally:
            for s in reversed(started):
                if s.proc is not None:
                    s.proc.stop()
    console.print(f"load average after: {load_average()}")
    tables = _tables(args, figures, pin_note)
    for t in tables:
        console.print(t)
    if args.markdown:
        for t in tables:
            print(_markdown(t))
    return 0


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def _requests(s: System, args: argparse.Namespace, load_cpus: str | None, f: Figures) -> None:
    pid = s.pid
    cpu0 = cpu_seconds(pid) if pid else 0.0
    res = wrk(f"http://127.0.0.1:{s.port}/", args.connections, args.seconds, load_cpus)
    cpu1 = cpu_seconds(pid) if pid else 0.0
    f.rps.append(res.rps)
    f.p50.append(res.p50)
    f.p99.append(res.p99)
    f.cpu.append((cpu1 - cpu0) / max(1, round(args.seconds)))
    if res.problems:
        f.problems.add(res.problems)


def _tls(s: System, args: argparse.Namespace, load_cpus: str | None, f: Figures) -> None:
    url = f"https://127.0.0.1:{s.tls_port}/"
    pid = s.pid
    for rates, cpus, headers in (
        (f.tls_rps, f.tls_rps_cpu, ()),
        (f.tls_new, f.tls_new_cpu, ("Connection: close",)),
    ):
        cpu0 = cpu_seconds(pid) if pid else 0.0
        res = wrk(url, args.connections, args.seconds, load_cpus, headers)
        cpus.append(((cpu_seconds(pid) if pid else 0.0) - cpu0) / max(1, round(args.seconds)))
        rates.append(res.rps)
        if res.problems:
            f.problems.add("TLS: " + res.problems)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    f.tls_full.append(_s_time(s.tls_port or 0, args.seconds, load_cpus))
    f.tls_full_cpu.append(((cpu_seconds(pid) if pid else 0.0) - cpu0) / max(1, round(args.seconds)))


def _s_time(port: int, seconds: float, load_cpus: str | None, clients: int = 2) -> float:
    """Full TLS handshakes/s: `clients` openssl s_time -new at once (each resumes nothing)."""
    argv = [
        "openssl",
        "s_time",
        "-connect",
        f"127.0.0.1:{port}",
        "-new",
        "-time",
        str(max(1, round(seconds))),
    ]
    procs = [
        subprocess.Popen(
            pinned(argv, load_cpus), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(clients)
    ]
    total = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        # "1234 connections in 5.01s; 246.31 connections/user sec, bytes read 0"
        # "1234 connections in 6 real seconds, 0 bytes read per connection"
        m = re.search(r"(\d+) connections in (\d+) real seconds", out)
        if m and int(m.group(2)):
            total += int(m.group(1)) / int(m.group(2))
    return total


def _h2(s: System, args: argparse.Namespace, load_cpus: str | None, f: Figures, seconds: float) -> None:
    """One h2load run: `--h2-clients` connections, `--h2-streams` concurrent streams on each."""
    pid = s.pid
    cpu0 = cpu_seconds(pid) if pid else 0.0
    argv = ["h2load", f"-c{args.h2_clients}", f"-m{args.h2_streams}", f"-D{max(1, round(seconds))}"]
    out = subprocess.run(
        pinned([*argv, f"http://127.0.0.1:{s.h2_port}/"], load_cpus),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    cpu1 = cpu_seconds(pid) if pid else 0.0
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if rps is None or done is None or "Application protocol: h2c" not in out:
        f.problems.add(f"h2load: {out.strip().splitlines()[-1] if out.strip() else 'no output'}")
        f.h2.append(0.0)
    else:
        f.h2.append(float(rps.group(1)))
        if int(done.group(2)) or int(done.group(3)):
            f.problems.add(f"h2load: {done.group(2)} failed, {done.group(3)} errored")
    f.h2_cpu.append((cpu1 - cpu0) / max(1, round(seconds)))


def _curl(argv: list[str], load_cpus: str | None) -> tuple[float, str]:
    out = subprocess.run(
        pinned(["curl", "-sS", "-o", "/dev/null", "--max-time", "120", *argv], load_cpus),
        capture_output=True,
        text=True,
        timeout=180,
    )
    speed, _, code = out.stdout.strip().partition(" ")
    if out.returncode != 0 or code != "200":
        return 0.0, f"curl: exit {out.returncode}, status {code or '-'} {out.stderr.strip()}"
    return float(speed), ""


def _transfers(s: System, work: Path, load_cpus: str | None, f: Figures) -> None:
    base = f"http://127.0.0.1:{s.port}"
    pid = s.pid
    for direction in ("down", "up"):
        if pid:
            reset_peak_rss(pid)
        if direction == "down":
            speed, problem = _curl(["-w", "%{speed_download} %{http_code}", f"{base}/big"], load_cpus)
        else:
            argv = [
                "-X",
                "POST",
                "-H",
                "Expect:",
                "-T",
                str(work / "upload"),
                "-w",
                "%{speed_upload} %{http_code}",
            ]
            speed, problem = _curl([*argv, f"{base}/upload"], load_cpus)
        getattr(f, direction).append(speed)
        getattr(f, f"rss_{direction}").append(peak_rss(pid) if pid else 0)
        if problem:
            f.problems.add(problem)


def _ratio(a: list[float], b: list[float]) -> str:
    """Median of the per-round ratios a/b (rounds are adjacent in time), with their range."""
    rs = sorted(x / y for x, y in zip(a, b, strict=True) if y)
    if not rs:
        return "-"
    med, _ = median_spread(rs)
    return f"{med:.2f} ({rs[0]:.2f} to {rs[-1]:.2f})"


def _tables(args: argparse.Namespace, figs: dict[str, Figures], pin_note: str) -> list[Table]:
    out: list[Table] = []
    t = Table(
        title=f"HTTP requests/s, wrk -t1 -c{args.connections} keep-alive, {args.rounds} alternating "
        f"rounds of {args.seconds:g}s (median; spread = (max-min)/median)",
        caption=f"{machine()}; {pin_note}; {args.workers} worker(s) each, tidegate's hot path {hot_path()}",
    )
    cols = ("system", "requests/s", "spread", "p50 ms", "p99 ms", "proxy CPU", "req/CPU-s", "problems")
    for col in cols:
        t.add_column(col, justify="left" if col in ("system", "problems") else "right")
    for name, f in figs.items():
        rps, spread = median_spread(f.rps)
        t.add_row(
            name + (" (ceiling)" if name == "direct" else ""),
            f"{rps:,.0f}",
            f"{spread * 100:.0f}%",
            f"{median_spread(f.p50)[0] * 1e3:.2f}",
            f"{median_spread(f.p99)[0] * 1e3:.2f}",
            f"{median_spread(f.cpu)[0] * 100:.0f}%" if name != "direct" else "",
            f"{median_spread([r / c for r, c in zip(f.rps, f.cpu, strict=True) if c])[0]:,.0f}"
            if name != "direct"
            else "",
            "; ".join(sorted(f.problems)) or "none",
        )
    out.append(t)
    tg = figs.get("tidegate")
    if tg is not None:
        r = Table(title="tidegate ÷ other, per round (median, range)")
        for col in ("other", "requests/s", "p99 latency"):
            r.add_column(col, justify="left" if col == "other" else "right")
        for name in ("nginx", "haproxy"):
            if name in figs:
                o = figs[name]
                r.add_row(name, _ratio(tg.rps, o.rps), _ratio(tg.p99, o.p99))
        out.append(r)
    if any(f.tls_rps for f in figs.values()):
        out.append(_tls_table(args, figs, pin_note))
    h2 = {name: f for name, f in figs.items() if f.h2}
    if h2:
        t2 = Table(
            title=f"HTTP/2 requests/s, h2load -c{args.h2_clients} -m{args.h2_streams} (h2c, prior "
            f"knowledge), {args.rounds} alternating rounds of {args.seconds:g}s (median)",
            caption="instances get HTTP/1.1 from every proxy; nginx's h2c is a port of its own",
        )
        for col in ("system", "requests/s", "spread", "proxy CPU", "req/CPU-s", "tidegate ÷ it"):
            t2.add_column(col, justify="left" if col == "system" else "right")
        tg2 = h2.get("tidegate")
        for name, f in h2.items():
            rps, spread = median_spread(f.h2)
            t2.add_row(
                name,
                f"{rps:,.0f}",
                f"{spread * 100:.0f}%",
                f"{median_spread(f.h2_cpu)[0] * 100:.0f}%",
                f"{median_spread([r / c for r, c in zip(f.h2, f.h2_cpu, strict=True) if c] or [0.0])[0]:,.0f}",
                _ratio(tg2.h2, f.h2) if tg2 is not None and name != "tidegate" else "",
            )
        out.append(t2)
    if not args.skip_transfers:
        x = Table(
            title=f"{args.transfer_mb} MB through each, one curl stream, {args.transfer_rounds} "
            "alternating rounds (median)",
            caption="peak RSS: the proxy process's VmHWM during the transfer (nginx: its worker)",
        )
        for col in ("system", "download MB/s", "upload MB/s", "peak RSS down", "peak RSS up"):
            x.add_column(col, justify="left" if col == "system" else "right")
        for name, f in figs.items():
            x.add_row(
                name,
                f"{median_spread(f.down)[0] / 1e6:,.0f}",
                f"{median_spread(f.up)[0] / 1e6:,.0f}",
                f"{max(f.rss_down) / 2**20:.0f} MiB" if name != "direct" else "",
                f"{max(f.rss_up) / 2**20:.0f} MiB" if name != "direct" else "",
            )
        out.append(x)
    return out


def _per_cpu(rates: list[float], cpus: list[float]) -> list[float]:
    return [r / c if c else 0.0 for r, c in zip(rates, cpus, strict=True)]


def _tls_table(args: argparse.Namespace, figs: dict[str, Figures], pin_note: str) -> Table:
    t = Table(
        title=f"HTTPS (TLS 1.3, P-256 certificate), {args.rounds} alternating rounds (median): keep-alive"
        f" requests/s (wrk -c{args.connections}), new connections/s (wrk, Connection: close; wrk resumes"
        " sessions), full handshakes/s (2 x openssl s_time -new); each also per second of the proxy's"
        " CPU, which is what compares proxies when the clients' own crypto bounds the rate",
        caption=f"{machine()}; {pin_note}; tidegate workers = {args.workers}, hot path {hot_path()}",
    )
    cols = ("system", "keep-alive req/s", "per CPU-s", "new conn/s", "per CPU-s", "full hs/s", "per CPU-s")
    for col in cols:
        t.add_column(col, justify="left" if col == "system" else "right")
    rows = {name: f for name, f in figs.items() if f.tls_rps}
    series = {
        name: (
            f.tls_rps,
            _per_cpu(f.tls_rps, f.tls_rps_cpu),
            f.tls_new,
            _per_cpu(f.tls_new, f.tls_new_cpu),
            f.tls_full,
            _per_cpu(f.tls_full, f.tls_full_cpu),
        )
        for name, f in rows.items()
    }
    for name, cells in series.items():
        t.add_row(name, *(f"{median_spread(c)[0]:,.0f}" for c in cells))
    tg = series.get("tidegate")
    if tg is not None:
        for name in ("nginx", "haproxy"):
            o = series.get(name)
            if o is not None:
                t.add_row(f"tidegate ÷ {name}", *(_ratio(a, b) for a, b in zip(tg, o, strict=True)))
    return t


def _markdown(t: Table) -> str:
    cols = t.columns
    lines = [f"{t.title}", "", "| " + " | ".join(str(c.header) for c in cols) + " |"]
    lines.append("| " + " | ".join("---" for _ in cols) + " |")
    for i in range(t.row_count):
        lines.append("| " + " | ".join(str(list(c.cells)[i]) for c in cols) + " |")
    if t.caption:
        lines += ["", str(t.caption)]
    return "\n".join(lines) + "\n"
