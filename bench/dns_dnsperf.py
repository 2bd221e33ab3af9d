"""dnsperf against tidegate's DNS layer and against gdnsd serving the same zone, in one run.

Both answer www.example.test. with one A record out of four, chosen by weight (1, 2, 3, 4):
tidegate with `answers = 1`, gdnsd with its `weighted` plugin (multi = false). With `--workers N`
tidegate runs `workers = N` and gdnsd `udp_threads = N` (default 1: one event loop against one
thread); `--gdnsd-threads` sets gdnsd's alone (its default is one thread per CPU). dnsperf runs
the same query file for the same time against each, from several sockets (so SO_REUSEPORT can
spread them), on loopback, in alternating rounds; the table gives the medians and tidegate's
ratio to gdnsd per round.

    bench/dns [--seconds 10] [--rounds 3] [--workers 1] [--gdnsd-threads N] [--cookie]

--cookie sends a DNS cookie (EDNS option 10, a client cookie, as dig does by default) in every
query; --no-gdnsd measures tidegate alone.

Each round also shows the server's CPU time per answered query, user and system, read from /proc
for the whole process tree (tidegate's workers, gdnsd's threads): on a shared machine the rates
move with the neighbours' load, the CPU per query much less, and the system part is the kernel's
UDP work and the system calls (gdnsd batches its datagrams with recvmmsg/sendmmsg; tidegate makes
a recvmsg and a sendmsg per query). The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tidegate.testing.process import Proc, tidegate

INSTANCES = [("127.0.0.11", 1), ("127.0.0.12", 2), ("127.0.0.13", 3), ("127.0.0.14", 4)]
QUERIES = "www.example.test A\n" * 9 + "nope.example.test A\n"  # 10% NXDOMAIN, as in real traffic
CLIENT_COOKIE = "24a1b2c3d4e5f607"  # one client's 8-byte cookie, hex, as dnsperf -E takes it


def free_port() -> int:
    """A port free for both UDP and TCP right now (gdnsd takes a fixed port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def tidegate_config(workers: int = 1) -> str:
    insts = ", ".join(f'{{ address = "{ip}:80", weight = {w} }}' for ip, w in INSTANCES)
    return f"""
[[pools]]
name = "web"
instances = [{insts}]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
negative_ttl = 60
workers = {workers}

[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 30
answers = 1
"""


def gdnsd_dir(base: Path, port: int, threads: int) -> Path:
    d = base / "gdnsd"
    (d / "zones").mkdir(parents=True)
    addrs = "\n".join(f"      i{n} = [ {ip}, {w} ]" for n, (ip, w) in enumerate(INSTANCES, 1))
    (d / "config").write_text(
        f"""options => {{
  listen => [ 127.0.0.1:{port} ]
  udp_threads => {threads}
  tcp_threads => 1
  run_dir => {d}/run
  state_dir => {d}/state
}}
plugins => {{
  weighted => {{
    www => {{
      multi = false
{addrs}
    }}
  }}
}}
"""
    )
    (d / "zones" / "example.test").write_text(
        "@ 60 SOA ns1 hostmaster 1 3600 600 604800 60\n@ 3600 NS ns1.example.test.\nwww 30 DYNA weighted!www\n"
    )
    return d


def dnsperf(
    port: int, queries: Path, seconds: int, cookie: bool = False, clients: int = 8
) -> dict[str, float]:
    extra = ["-E", f"10:{CLIENT_COOKIE}"] if cookie else []
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-q",
            "200",
            "-c",
            str(clients),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    if not qps:
        raise RuntimeError("dnsperf said:\n" + out)
    return {
        "qps": float(qps.group(1)),
        "lost": float(lost.group(1)) if lost else 0.0,
        "latency_ms": float(lat.group(1)) * 1000 if lat else 0.0,
    }


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                out += process_tree(int(child))
    return out


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes' threads so far."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
    return user / tick, system / tick


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def check_answers(port: int) -> str:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "www.example.test", "A"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    if len(out) != 1 or out[0] not in {ip for ip, _ in INSTANCES}:
        raise RuntimeError(f"unexpected answer {out} on port {port}")
    return out[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument(
        "--workers", type=int, default=1, help="tidegate workers; gdnsd udp_threads too (default 1)"
    )
    ap.add_argument("--gdnsd-threads", type=int, default=0, help="gdnsd udp_threads (default: --workers)")
    ap.add_argument("--cookie", action="store_true", help="a DNS cookie option in every query")
    ap.add_argument("--no-gdnsd", action="store_true", help="tidegate alone")
    args = ap.parse_args()
    threads = args.gdnsd_threads or args.workers
    for tool in ("dnsperf", "gdnsd", "dig"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install dnsperf gdnsd bind9-dnsutils)", file=sys.stderr)
            return 2
    results: dict[str, list[dict[str, float]]] = {"tidegate": [], "gdnsd": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        queries = base / "queries.txt"
        queries.write_text(QUERIES)
        cfg = base / "tidegate.toml"
        cfg.write_text(tidegate_config(args.workers))
        tg = tidegate("run", str(cfg))
        gd: Proc | None = None
        try:
            tg.wait_for("tidegate: ready")
            port = tg.address("dns")[1]
            check_answers(port)
            gport = 0
            if not args.no_gdnsd:
                gport = free_port()
                gd = Proc(["gdnsd", "-c", str(gdnsd_dir(base, gport, threads)), "start"])
                gd.wait_for("DNS listeners started")
                check_answers(gport)
            print(f"load average before: {load()} ({os.cpu_count()} CPUs)", flush=True)
            pids = {"tidegate": tg.popen.pid, "gdnsd": gd.popen.pid if gd is not None else 0}
            for r in range(args.rounds):
                for name, p in (("tidegate", port), ("gdnsd", gport)):
                    if p == 0:
                        continue
                    tree = process_tree(pids[name])
                    user0, sys0 = cpu_seconds(tree)
                    got = dnsperf(p, queries, args.seconds, args.cookie)
                    user1, sys1 = cpu_seconds(tree)
                    answered = max(got["qps"] * args.seconds, 1.0)
                    got["user_us"] = (user1 - user0) / answered * 1e6
                    got["sys_us"] = (sys1 - sys0) / answered * 1e6
                    results[name].append(got)
                    print(
                        f"round {r + 1} {name:9s} {got['qps']:10.0f} queries/s  avg latency "
                        f"{got['latency_ms']:.2f} ms  lost {got['lost']:.0f}  CPU per query "
                        f"{got['user_us']:.2f} us user + {got['sys_us']:.2f} us system",
                        flush=True,
                    )
            print(f"load average after: {load()}", flush=True)
        finally:
            tg.stop()
            if gd is not None:
                gd.stop()

    shape = "with a DNS cookie" if args.cookie else "without EDNS options"
    for name, rs in results.items():
        if rs:
            qps = statistics.median(r["qps"] for r in rs)
            lat = statistics.median(r["latency_ms"] for r in rs)
            user = statistics.median(r["user_us"] for r in rs)
            system = statistics.median(r["sys_us"] for r in rs)
            print(
                f"{name:9s} median {qps:10.0f} queries/s  latency {lat:.2f} ms  "
                f"CPU per query {user:.2f} us user + {system:.2f} us system"
            )
    if results["gdnsd"]:
        ratios = [t["qps"] / g["qps"] for t, g in zip(results["tidegate"], results["gdnsd"], strict=True)]
        print(
            f"tidegate/gdnsd = {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)}; "
            f"{args.seconds} s each, tidegate workers={args.workers}, gdnsd udp_threads={threads}, {shape})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
