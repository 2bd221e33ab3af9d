"""bench/lvs: connections per second and bulk throughput through the userspace LVS director in
each mode (DR, TUN, NAT), against tidegate's L4 proxy ([[tcp]]) and against going direct.

Each mode gets its own network of namespaces (tidegate.testing.netns: client, director, three
real servers on one bridge, 198.18.0.0/15 only) with nginx as the real servers. From the client:
- connections/s: wrk, one new TCP connection per request (`Connection: close`), a 2-byte body;
- bulk: one curl download of a large file (single TCP stream), MB/s as curl measures it.
The director's CPU use during each run (from /proc) says how close to its limit it was.

Run as root:  python bench/lvs.py [--seconds 5] [--bulk-mb 256] [--json out.json]
Everything shares this machine's cores (the client, the director, the servers, the kernel's
veth and bridge work), so the numbers compare the paths with one another on this box; they are
not what the same code does with a core of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tidegate.testing.netns import DIRECTOR_IP, VIP, Topology, can_make_namespaces
from tidegate.testing.process import Proc

NGINX = """
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 80 reuseport backlog=4096;
        root {dir};
        location = / {{ return 200 "{name}\\n"; }}
        location = /healthz {{ return 200 "ok\\n"; }}
    }}
}}
"""

CONFIG = """
[[pools]]
name = "web"
scheduler = "round-robin"
instances = [ {instances} ]
[pools.health]
type = "tcp"
interval = "1s"

[lvs]
mode = "{mode}"
vip = "{vip}:80"
interface = "eth0"
pool = "web"

[[tcp]]
listen = "{director}:8000"
pool = "web"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, mode: str, seconds: int, bulk_mb: int, work: Path) -> None:
        self.mode = mode
        self.seconds = seconds
        self.bulk_mb = bulk_mb
        self.work = work
        self.topo = Topology(mode)
        self.director: Proc | None = None
        self.bulk_runs = 3

    def start(self) -> None:
        topo = self.topo.build()
        for i, ns in enumerate(topo.servers):
            d = self.work / f"{self.mode}-rs{i + 1}"
            d.mkdir()
            with open(d / "big", "wb") as f:
                f.truncate(self.bulk_mb << 20)
            (d / "nginx.conf").write_text(NGINX.format(dir=d, name=f"rs{i + 1}"))
            topo.start(ns, ["nginx", "-c", str(d / "nginx.conf"), "-g", "daemon off;"])
        if self.mode != "nat":
            setups = [
                topo.python(
                    ns, "-m", "tidegate", "lvs-realserver", "--mode", self.mode, "--vip", VIP, "--apply"
                )
                for ns in topo.servers
            ]
            for p in setups:
                p.wait_for("lvs-realserver ready")
        for ip in topo.server_ips:
            self._wait_port(ip, 80)
        instances = ", ".join(f'{{ address = "{ip}:80" }}' for ip in topo.server_ips)
        cfg = self.work / f"{self.mode}.toml"
        cfg.write_text(CONFIG.format(instances=instances, mode=self.mode, vip=VIP, director=DIRECTOR_IP))
        self.director = topo.python(topo.director, "-m", "tidegate", "run", str(cfg))
        self.director.wait_for("tidegate: ready", timeout=30)

    def _wait_port(self, ip: str, port: int) -> None:
        res = self.topo.run(
            self.topo.client if self.mode != "nat" else self.topo.director,
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--retry",
                "20",
                "--retry-connrefused",
                "--retry-delay",
                "0",
                f"http://{ip}:{port}/healthz",
            ],
        )
        if res.returncode:
            raise RuntimeError(f"real server {ip} did not come up: {res.stderr}")

    def measure(self, url: str, from_ns: str | None = None) -> dict[str, float]:
        ns = from_ns or self.topo.client
        assert self.director is not None
        pid = self.director.popen.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        res = self.topo.run(
            ns,
            ["wrk", "-t2", "-c32", f"-d{int(self.seconds)}s", "-H", "Connection: close", url + "/"],
            timeout=self.seconds + 30,
        )
        c1, t1 = cpu_seconds(pid), time.monotonic()
        m = re.search(r"Requests/sec:\s+([\d.]+)", res.stdout)
        errors = re.search(r"Socket errors: (.*)", res.stdout)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", res.stdout)
        cps = float(m.group(1)) if m else 0.0
        if not m:
            print(f"wrk {url}: {res.stdout}{res.stderr}", file=sys.stderr)
        c2, t2 = cpu_seconds(pid), time.monotonic()
        speeds = []
        for _ in range(self.bulk_runs):  # the best of a few single-stream downloads: on a shared
            bulk = self.topo.run(  # box the others mostly measure what else was running
                ns,
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-m",
                    "60",
                    "-w",
                    "%{speed_download} %{size_download}",
                    url + "/big",
                ],
                timeout=90,
            )
            if bulk.returncode:
                print(f"curl {url}/big: exit {bulk.returncode} {bulk.stderr}", file=sys.stderr)
                continue
            speed, size = (float(x) for x in bulk.stdout.split())
            if size == self.bulk_mb << 20:
                speeds.append(speed)
        c3, t3 = cpu_seconds(pid), time.monotonic()
        speed = max(speeds, default=0.0)
        return {
            "connections_per_s": round(cps),
            "conn_errors": (errors.group(1) if errors else "")
            + (f" non-2xx {non2xx.group(1)}" if non2xx else ""),
            "director_cpu_conn": round((c1 - c0) / (t1 - t0), 2),
            "bulk_MBps": round(speed / 1e6, 1),
            "director_cpu_bulk": round((c3 - c2) / (t3 - t2), 2),
        }

    def close(self) -> None:
        self.topo.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--bulk-mb", type=int, default=512)
    ap.add_argument("--modes", default="dr,tun,nat")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    reason = can_make_namespaces()
    if reason:
        print(f"bench/lvs: {reason}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tg-bench-lvs-") as tmp:
        for mode in args.modes.split(","):
            b = Bench(mode, args.seconds, args.bulk_mb, Path(tmp))
            try:
                b.start()
                results[f"lvs {mode}"] = b.measure(f"http://{VIP}")
                if mode == "dr":
                    results["tcp proxy"] = b.measure(f"http://{DIRECTOR_IP}:8000")
                    results["direct (one server)"] = b.measure(f"http://{b.topo.server_ips[0]}")
            finally:
                b.close()
            print(f"{mode}: done", file=sys.stderr, flush=True)
    cols = ["connections_per_s", "director_cpu_conn", "bulk_MBps", "director_cpu_bulk", "conn_errors"]
    print("| path | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(str(r[c]) for c in cols) + " |")
    print(
        f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}, on {os.cpu_count()} CPUs"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
