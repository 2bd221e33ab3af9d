"""Upgrading the proxy itself under load: tidegate's self-upgrade beside nginx's binary upgrade and
HAProxy's seamless reload, the same load and the same backends, one after the other.

    bench/selfupgrade [--seconds 12] [--switches 3] [--connections 32]

For each proxy: two nginx backends; wrk (keep-alive, one thread, --latency) for the whole run and
a loop of one-request connections beside it; `--switches` upgrades spread over the run:

- tidegate: `kill -USR2` (the new process takes the sockets over, the old one drains);
- nginx: `kill -USR2` on the master (a new master from the binary), then `-QUIT` on the old
  master once the new one wrote its pid file (nginx's documented binary upgrade);
- HAProxy (master-worker, `-W`, `expose-fd listeners`): `kill -USR2` on the master (a new
  worker receives the listeners, the old one finishes).

Printed per proxy: wrk's requests, socket errors and non-2xx, p50/p99/max latency over the run,
the one-shot loop's successes, refused connects and other errors; and the same without any
switch as the baseline. The box is shared with other work: read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidegate.bench.http_systems import System, start_backend
from tidegate.bench.kit import _seconds, free_port, load_average, machine, missing_tools, parse_wrk, wait_port
from tidegate.testing.process import Proc, child_env


@dataclass
class Outcome:
    name: str
    requests: int
    rps: float
    p50: float
    p99: float
    max: float
    wrk_problems: str
    oneshot_ok: int
    refused: int
    oneshot_errors: int
    switches: int


class OneShots(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = self.refused = self.errors = 0
        self.seen: list[str] = []  # the first few errors, as they were raised
        self.stop = threading.Event()

    def run(self) -> None:
        req = b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(req)
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError as exc:
                self.errors += 1
                self.seen.append(repr(exc))
                continue
            if data.startswith(b"HTTP/1.1 200"):
                self.ok += 1
            else:
                self.errors += 1
                self.seen.append(repr(data[:60]))


def _read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def _until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_tidegate(work: Path, backends: list[int]) -> tuple[System, Callable[[], None]]:
    conf = work / "tidegate.toml"
    instances = ", ".join(f'{{ address = "127.0.0.1:{p}" }}' for p in backends)
    conf.write_text(
        f'[[pools]]\nname = "bench"\ninstances = [ {instances} ]\n'
        '[pools.health]\ntype = "http"\npath = "/healthz"\ninterval = "1s"\n'
        '[[http]]\nlisten = "127.0.0.1:0"\npool = "bench"\n'
    )
    pid_file = work / "tidegate.pid"
    proc = Proc(
        [sys.executable, "-m", "tidegate", "run", str(conf), "--grace", "10", "--pid-file", str(pid_file)],
        env=child_env(),
    )
    proc.wait_for(r"tidegate: ready")

    def switch() -> None:
        mark = len(proc.lines)
        os.kill(_read_pid(pid_file), signal.SIGUSR2)
        proc.wait_for_new(r"tidegate: upgraded to pid|self-upgrade failed", mark, timeout=60)

    return System("tidegate", proc, proc.address("http")[1]), switch


def start_nginx(work: Path, backends: list[int]) -> tuple[System, Callable[[], None]]:
    port = free_port()
    conf = work / "proxy-nginx.conf"
    pid_file = work / "proxy-nginx.pid"
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""
{user}
worker_processes 1;
pid {pid_file};
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {work}/proxy-nginx-body;
    proxy_temp_path {work}/proxy-nginx-proxy;
    upstream bench {{
{servers}
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 http_504;
        }}
    }}
}}
"""
    )
    # Daemonised, as in production: the new master of a binary upgrade is the old one's child.
    # By its full path: the binary upgrade executes argv[0] again.
    subprocess.run(
        [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"], check=True
    )
    wait_port(port)

    def switch() -> None:
        old = _read_pid(pid_file)
        os.kill(old, signal.SIGUSR2)
        oldbin = Path(f"{pid_file}.oldbin")
        if not _until(lambda: oldbin.exists() and pid_file.exists() and _read_pid(pid_file) != old, 30):
            sys.exit("nginx: no new master after USR2")
        os.kill(old, signal.SIGQUIT)
        _until(lambda: not oldbin.exists(), 30)

    return System("nginx", None, port), switch


def start_haproxy(work: Path, backends: list[int]) -> tuple[System, Callable[[], None]]:
    port = free_port()
    conf = work / "haproxy.cfg"
    pid_file = work / "haproxy.pid"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(backends, 1))
    conf.write_text(
        f"""
global
    nbthread 1
    maxconn 8000
    stats socket {work}/haproxy.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend http_in
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""
    )
    proc = Proc(["haproxy", "-W", "-db", "-f", str(conf), "-p", str(pid_file)])
    wait_port(port, proc)

    def switch() -> None:
        mark = len(proc.lines)
        os.kill(proc.popen.pid, signal.SIGUSR2)
        proc.wait_for_new(r"[Rr]eload|Loading success|New worker", mark, timeout=30)

    return System("haproxy", proc, port), switch


def stop(system: System, work: Path) -> None:
    if system.name == "tidegate" and system.proc is not None:
        pid_file = work / "tidegate.pid"
        if pid_file.exists():
            os.kill(_read_pid(pid_file), signal.SIGTERM)
        system.proc._reader.join(30)
        system.proc.stop()
    elif system.name == "nginx":
        pid_file = work / "proxy-nginx.pid"
        if pid_file.exists():
            os.kill(_read_pid(pid_file), signal.SIGQUIT)
            _until(lambda: not pid_file.exists(), 30)
    elif system.proc is not None:
        system.proc.stop()


def measure(
    name: str, system: System, switch: Callable[[], None] | None, seconds: float, switches: int, conns: int
) -> Outcome:
    loop = OneShots(system.port)
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{conns}", f"-d{round(seconds)}s", "--timeout", "5s", "--latency",
         f"http://127.0.0.1:{system.port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    loop.start()
    done = 0
    start = time.monotonic()
    if switch is not None:
        for k in range(1, switches + 1):
            at = start + seconds * k / (switches + 1)
            time.sleep(max(0.0, at - time.monotonic()))
            switch()
            done += 1
    out, _ = wrk.communicate(timeout=seconds + 60)
    loop.stop.set()
    loop.join(10)
    for seen in loop.seen[:5]:
        print(f"{name}: one-shot error: {seen}", file=sys.stderr)
    res = parse_wrk(out)
    if res is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    total = re.search(r"(\d+) requests in", out)
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    return Outcome(
        name,
        int(total.group(1)) if total else 0,
        res.rps,
        res.p50,
        res.p99,
        _seconds(mx.group(1)) if mx else 0.0,
        res.problems or "none",
        loop.ok,
        loop.refused,
        loop.errors,
        done,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--switches", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", choices=["tidegate", "nginx", "haproxy"], action="append")
    args = ap.parse_args(argv)
    missing = missing_tools(["wrk", "nginx", "haproxy"])
    if missing:
        sys.exit(f"missing: {', '.join(missing)}")
    starters = {"tidegate": start_tidegate, "nginx": start_nginx, "haproxy": start_haproxy}
    rows: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="tidegate-selfupgrade-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        backends = [start_backend(work, f"backend{i}", None) for i in (1, 2)]
        try:
            for name in args.only or list(starters):
                sub = work / name
                sub.mkdir()
                system, switch = starters[name](sub, [b.port for b in backends])
                try:
                    rows.append(
                        measure(f"{name} (no switch)", system, None, args.seconds, 0, args.connections)
                    )
                    rows.append(measure(name, system, switch, args.seconds, args.switches, args.connections))
                finally:
                    stop(system, sub)
        finally:
            for b in backends:
                if b.proc is not None:
                    b.proc.stop()
    print(f"\n{machine()}; load average {load_average()} (shared box)")
    print(f"wrk -t1 -c{args.connections} {args.seconds:g}s keep-alive + a one-request-per-connection loop\n")
    head = f"{'proxy':<22} {'switches':>8} {'requests':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'1-shot ok':>9} {'refused':>7} {'1-shot err':>10}  wrk errors"
    print(head)
    for r in rows:
        print(
            f"{r.name:<22} {r.switches:>8} {r.requests:>9} {r.p50 * 1e3:>7.2f} {r.p99 * 1e3:>7.2f} "
            f"{r.max * 1e3:>7.1f} {r.oneshot_ok:>9} {r.refused:>7} {r.oneshot_errors:>10}  {r.wrk_problems}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
