"""bench/rollout: `tidegate upgrade` of a 3-instance pool while several load generator processes
keep the gateway busy; requests, errors, throughput and latency before / during / after.

Everything runs on this machine on 127.0.0.1: the gateway (`tidegate run`), the instances
(`tidegate serve … --register`, the demo app), the load (`tidegate.testing.load_generator`, one
process per --processes, keep-alive connections, half GETs and half 4 KiB POSTs whose echo digest
is checked) and the rollout. Its numbers say what a client sees during an upgrade on this box,
not what tidegate does on a big one: on 2 cores the load generators and the gateway share them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tidegate.testing.process import Proc, child_env, tidegate

CONFIG = """
[admin]
listen = "127.0.0.1:0"
[[pools]]
name = "web"
scheduler = "round-robin"
slow_start = "2s"
instances = []
[pools.health]
type = "http"
path = "/healthz"
interval = "{interval}"
timeout = "1s"
rise = 2
fall = 2
[[http]]
listen = "127.0.0.1:0"
pool = "web"
"""


def summary(
    started: list[float], latency: list[float], status: list[int], lo: float, hi: float
) -> dict[str, float]:
    idx = [i for i, t in enumerate(started) if lo <= t < hi]
    lat = sorted(latency[i] for i in idx)
    n = len(idx)
    return {
        "seconds": hi - lo,
        "requests": n,
        "rps": n / (hi - lo) if hi > lo else 0.0,
        "non_2xx": sum(1 for i in idx if status[i] >= 0 and not 200 <= status[i] < 300),
        "conn_errors": sum(1 for i in idx if status[i] < 0),
        "p50_ms": 1000 * lat[n // 2] if n else 0.0,
        "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))] if n else 0.0,
        "max_ms": 1000 * lat[-1] if n else 0.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the whole run (default 60)")
    p.add_argument("--start-at", type=float, default=15.0, help="when the rollout starts (default 15 s in)")
    p.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    p.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections per process (default 32)"
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--interval", default="500ms", help="health check interval of the pool (default 500ms)")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tidegate-bench-rollout-"))
    version = work / "VERSION"
    version.write_text("1\n")
    cfg = work / "tidegate.toml"
    cfg.write_text(CONFIG.format(interval=a.interval))
    procs: list[Proc] = []
    try:
        gw = tidegate("run", str(cfg))
        procs.append(gw)
        gw.wait_for(r"tidegate: ready")
        admin = "http://" + gw.listening["admin"]
        host, port = gw.address("http")
        env = child_env({"TIDEGATE_DEMO_VERSION_FILE": str(version)})
        serve = tidegate(
            "serve", "tidegate.instance.demo_app:app", "--instances", "3", "--port", "0",
            "--register", admin, "--pool", "web", "--drain-window", "0.5", env=env,
        )  # fmt: skip
        procs.append(serve)
        serve.wait_for(r"tidegate: ready", timeout=30)
        time.sleep(1.5)  # let the health checks see the new instances up (bench, not a test)

        outs = [work / f"load{i}.json" for i in range(a.processes)]
        loads = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tidegate.testing.load_generator",
                    f"{host}:{port}",
                    "--seconds",
                    str(a.seconds),
                    "--connections",
                    str(a.connections),
                    "--out",
                    str(out),
                ],
                env=child_env(),
            )
            for out in outs
        ]
        t0 = time.monotonic()
        time.sleep(a.start_at)
        version.write_text("2\n")
        began = time.monotonic()
        up = tidegate("upgrade", "--admin", admin, "--pool", "web", "--batch", str(a.batch))
        code = up.popen.wait(a.seconds * 3)
        ended = time.monotonic()
        for load in loads:
            load.wait(a.seconds + 60)
        up.stop()
        print(up.output(), file=sys.stderr)
        started: list[float] = []
        latency: list[float] = []
        status: list[int] = []
        versions: dict[str, int] = {}
        errors: dict[str, int] = {}
        bad = 0
        for out in outs:
            doc = json.loads(out.read_text())
            started += doc["started"]
            latency += doc["latency"]
            status += doc["status"]
            bad += doc["bad_bodies"]
            for k, v in doc["versions"].items():
                versions[k] = versions.get(k, 0) + v
            for k, v in doc["errors"].items():
                errors[k] = errors.get(k, 0) + v
        end = max(started) if started else ended
        rows = {
            "before": summary(started, latency, status, t0, began),
            "during": summary(started, latency, status, began, ended),
            "after": summary(started, latency, status, ended, end),
            "total": summary(started, latency, status, t0, end),
        }
        print(
            f"\nbench/rollout: 3 instances, batch {a.batch}, {a.processes} load processes x {a.connections} "
            f"keep-alive connections (GET / and POST /echo 4 KiB), {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the end; "
            f"upgrade exit code {code}, rollout took {ended - began:.1f} s"
        )
        print(
            f"{'':8} {'seconds':>8} {'requests':>9} {'req/s':>8} {'non-2xx':>8} {'conn err':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        )
        for name, r in rows.items():
            print(
                f"{name:8} {r['seconds']:8.1f} {r['requests']:9d} {r['rps']:8.0f} {r['non_2xx']:8d} "
                f"{r['conn_errors']:9d} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
            )
        print(
            f"answers by version: {versions}; POST echoes with a wrong digest: {bad}; errors: {errors or 'none'}"
        )
        if a.json:
            Path(a.json).write_text(json.dumps({"rows": rows, "versions": versions, "exit": code}, indent=2))
        return 0 if code == 0 and rows["total"]["non_2xx"] == 0 and rows["total"]["conn_errors"] == 0 else 1
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    sys.exit(main())
