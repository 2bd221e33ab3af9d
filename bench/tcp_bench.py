"""bench/tcp: tidegate's `[[tcp]]` listener beside HAProxy `mode tcp` and nginx `stream`.

Same machine, same instance, same load generator, one run, alternating A B C A B C so drift on a
shared box (page cache, CPU frequency, other tenants) spreads over all three. Two figures:

- connections/s: wrk sends one small HTTP request per connection (`Connection: close`), so every
  request is a new client connection and a new connection from the proxy to the instance;
- bulk throughput: wrk over one keep-alive connection downloading a large file again and again
  (instance → client through the proxy, sendfile on the instance side);
- redis: redis-benchmark (GET and SET, `--redis-clients` connections, no pipelining) through each
  proxy to one redis-server, and straight to it: small messages on kept connections, where what
  counts is the cost of relaying one message.

The instance is an nginx `http` server with one worker. Each proxy runs one worker (tidegate is
one process with one event loop; HAProxy `nbthread 1`; nginx `worker_processes 1`), so the
ratios compare work per core. On a 2-core machine wrk, the instance and the proxy share two
cores: absolute numbers say little about a big server, the ratios are the point.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tidegate.bench.kit import NGINX_MODULES, cpu_seconds, free_port, wait_port
from tidegate.testing.process import Proc, tidegate


# --- the instance and the three proxies -------------------------------------------------------
def start_instance(work: Path, size: int) -> tuple[Proc, int]:
    port = free_port()
    root = work / "www"
    root.mkdir()
    (root / "small").write_bytes(b"ok\n")
    with open(root / "big", "wb") as f:  # random-ish bytes, in the page cache after the first read
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(block)
    conf = work / "instance.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {work}/instance.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""
    )
    proc = Proc(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"])
    wait_port(port, proc)
    return proc, port


def start_tidegate(work: Path, instance: int, workers: int = 1) -> tuple[Proc, int]:
    conf = work / "tidegate.toml"
    conf.write_text(
        f"""
[[pools]]
name = "bench"
instances = [{{ address = "127.0.0.1:{instance}" }}]
[[tcp]]
listen = "127.0.0.1:0"
pool = "bench"
workers = {workers}
"""
    )
    proc = tidegate("run", str(conf))
    proc.wait_for(r"tidegate: ready")
    return proc, proc.address("tcp")[1]


def start_haproxy(work: Path, instance: int, workers: int = 1) -> tuple[Proc, int]:
    port = free_port()
    conf = work / "haproxy.cfg"
    conf.write_text(
        f"""
global
    nbthread {workers}
    maxconn 8000
defaults
    mode tcp
    timeout connect 2s
    timeout client 600s
    timeout server 600s
frontend tcp_in
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    server i1 127.0.0.1:{instance}
"""
    )
    proc = Proc(["haproxy", "-db", "-f", str(conf)])
    wait_port(port, proc)
    return proc, port


def start_nginx_stream(work: Path, instance: int, workers: int = 1) -> tuple[Proc, int]:
    port = free_port()
    conf = work / "stream.conf"
    conf.write_text(
        f"""
load_module {NGINX_MODULES}/ngx_stream_module.so;
worker_processes {workers};
daemon off;
pid {work}/stream.pid;
error_log stderr warn;
events {{ worker_connections 8000; }}
stream {{
    upstream instances {{ server 127.0.0.1:{instance}; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_connect_timeout 2s;
        proxy_timeout 600s;
        proxy_pass instances;
    }}
}}
"""
    )
    proc = Proc(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"])
    wait_port(port, proc)
    return proc, port


# --- the load -------------------------------------------------------------------------------
_UNITS = {"": 1, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def start_redis(work: Path) -> tuple[Proc, int]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = Proc([*argv, "--dir", str(work), "--maxclients", "10000"])
    wait_port(port, proc)
    return proc, port


def redis_benchmark(port: int, requests: int, clients: int) -> float:
    """GET and SET requests/s through `port` (the mean of the two)."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get"]
    argv += ["-n", str(requests), "-c", str(clients), "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    rates = [float(m.group(1)) for m in re.finditer(r'^"(?:SET|GET)","([\d.]+)"', out, re.MULTILINE)]
    if len(rates) != 2:
        sys.exit(f"could not read redis-benchmark's output:\n{out}")
    return sum(rates) / 2


def wrk(
    url: str, connections: int, seconds: float, close: bool, threads: int = 1
) -> tuple[float, float, str]:
    """(requests/s, bytes/s, problems) from one wrk run."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    if rps is None or tps is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    problems = "; ".join(
        line.strip() for line in out.splitlines() if "Socket errors" in line or "Non-2xx" in line
    )
    return float(rps.group(1)), float(tps.group(1)) * _UNITS[tps.group(2)], problems


@dataclass
class Results:
    conns: list[float] = field(default_factory=list)  # connections/s
    conn_cpu: list[float] = field(default_factory=list)  # proxy CPU seconds per connection
    bulk: list[float] = field(default_factory=list)  # bytes/s
    bulk_cpu: list[float] = field(default_factory=list)  # proxy CPU seconds per byte
    redis: list[float] = field(default_factory=list)  # redis-benchmark requests/s
    problems: list[str] = field(default_factory=list)


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/tcp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="A B C rounds (default 3)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds per measurement (default 5)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent connections for connections/s")
    ap.add_argument("--size-mib", type=int, default=256, help="size of the bulk file (default 256 MiB)")
    ap.add_argument("--direct", action="store_true", help="also measure without a proxy")
    ap.add_argument("--threads", type=int, default=4, help="wrk threads for connections/s (default 4)")
    ap.add_argument("--redis-requests", type=int, default=200_000, help="redis-benchmark -n (0: no redis)")
    ap.add_argument("--redis-clients", type=int, default=50, help="redis-benchmark -c (default 50)")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes or threads of every proxy: tidegate workers, HAProxy nbthread, nginx "
        "worker_processes (default 1)",
    )
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/tcp needs {tool} (bench/bootstrap installs what is missing)")
    if not (NGINX_MODULES / "ngx_stream_module.so").exists():
        sys.exit("bench/tcp needs nginx's stream module (libnginx-mod-stream; see bench/bootstrap)")

    console = Console(width=240)
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-tcp-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as another user and must read the files
        procs: list[Proc] = []
        try:
            instance, iport = start_instance(work, args.size_mib << 20)
            procs.append(instance)
            starters: dict[str, Callable[[Path, int, int], tuple[Proc, int]]] = {
                "tidegate": start_tidegate,
                "haproxy": start_haproxy,
                "nginx": start_nginx_stream,
            }
            targets: dict[str, tuple[Proc | None, int]] = {}
            for name, start in starters.items():
                proc, port = start(work, iport, args.workers)
                procs.append(proc)
                targets[name] = (proc, port)
            if args.direct:
                targets["direct"] = (None, iport)
            # The same proxies again in front of redis-server (and redis straight, always: the
            # figure the proxies' cost is read against).
            redis_targets: dict[str, int] = {}
            if args.redis_requests and shutil.which("redis-server") and shutil.which("redis-benchmark"):
                (work / "redis").mkdir()
                redis, rport = start_redis(work / "redis")
                procs.append(redis)
                for name, start in starters.items():
                    proc, port = start(work / "redis", rport, args.workers)
                    procs.append(proc)
                    redis_targets[name] = port
                redis_targets["direct"] = rport
            results = {name: Results() for name in {**targets, **redis_targets}}
            # Warm up: the big file into the page cache, every proxy's first connections.
            for _, port in targets.values():
                wrk(f"http://127.0.0.1:{port}/big", 1, 1, close=False)
            for r in range(args.rounds):
                for name, (proc, port) in targets.items():
                    base = f"http://127.0.0.1:{port}"
                    cpu = (lambda p=proc: cpu_seconds(p.popen.pid)) if proc else (lambda: 0.0)
                    cpu0 = cpu()
                    rps, _, p1 = wrk(f"{base}/small", args.connections, args.seconds, True, args.threads)
                    cpu1 = cpu()
                    _, bps, p2 = wrk(f"{base}/big", 1, args.seconds, close=False)
                    cpu2 = cpu()
                    res = results[name]
                    res.conns.append(rps)
                    res.conn_cpu.append((cpu1 - cpu0) / (rps * args.seconds))
                    res.bulk.append(bps)
                    res.bulk_cpu.append((cpu2 - cpu1) / (bps * args.seconds))
                    res.problems += [p for p in (p1, p2) if p]
                    console.print(
                        f"round {r + 1} {name:9s} {rps:9.0f} conn/s ({res.conn_cpu[-1] * 1e6:5.1f} µs CPU each)"
                        f"  {bps / 1e6:7.0f} MB/s ({res.bulk_cpu[-1] * 1e9:4.2f} s CPU per GB)"
                    )
                for name, port in redis_targets.items():
                    res = results[name]
                    res.redis.append(redis_benchmark(port, args.redis_requests, args.redis_clients))
                    console.print(f"round {r + 1} {name:9s} {res.redis[-1]:9.0f} redis requests/s")
        finally:
            for proc in reversed(procs):
                proc.stop()

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    def spread(xs: list[float], scale: float, fmt: str) -> str:
        if not xs:
            return ""
        return f"{med(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}})"

    def ratio(mine: list[float], theirs: list[float]) -> str:
        return f"{med(mine) / med(theirs):.2f}" if mine and theirs else ""

    load = os.getloadavg()[0]
    table = Table(
        title=f"TCP proxies: {args.rounds} alternating rounds of {args.seconds}s; median (min-max). "
        f"{args.workers} worker(s) each; wrk -t{args.threads} -c{args.connections} for connections/s; "
        f"redis-benchmark -c{args.redis_clients} -n{args.redis_requests} GET+SET; {os.cpu_count()} CPUs "
        f"shared with the load generators and the instances; load average {load:.1f}",
        title_justify="left",
    )
    columns = (
        "proxy",
        "connections/s",
        "tidegate/this",
        "CPU µs per connection",
        "tidegate/this",
        "bulk MB/s",
        "tidegate/this",
        "CPU s per GB",
        "tidegate/this",
        "redis requests/s",
        "tidegate/this",
        "this/direct",
        "problems",
    )
    for col in columns:
        table.add_column(col, justify="left" if col in ("proxy", "problems") else "right")
    tg = results["tidegate"]
    direct = results.get("direct", Results())
    for name, res in results.items():
        mine = name == "tidegate"
        proxy = name != "direct"
        table.add_row(
            name,
            spread(res.conns, 1, ",.0f"),
            "" if mine else ratio(tg.conns, res.conns),
            spread(res.conn_cpu, 1e6, ".1f") if proxy else "",
            "" if mine or not proxy else ratio(tg.conn_cpu, res.conn_cpu),
            spread(res.bulk, 1e-6, ",.0f"),
            "" if mine else ratio(tg.bulk, res.bulk),
            spread(res.bulk_cpu, 1e9, ".2f") if proxy else "",
            "" if mine or not proxy else ratio(tg.bulk_cpu, res.bulk_cpu),
            spread(res.redis, 1, ",.0f"),
            "" if mine else ratio(tg.redis, res.redis),
            ratio(res.redis, direct.redis) if proxy else "",
            "; ".join(sorted(set(res.problems))) or "none",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
