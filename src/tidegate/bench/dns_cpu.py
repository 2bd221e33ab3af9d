"""The DNS layer's own cost per query, without sockets: a steady figure to compare answer-path
changes with on a machine whose load comes and goes.

The real `DnsService` and its UDP protocol; only the datagram transport is a stand-in that keeps
the last answer. The queries are bench/dns_dnsperf.py's: www.example.test A (a weighted draw of
one address out of four) nine times in ten, nope.example.test A (NXDOMAIN) once, each with its
own id, as dnsperf sends them. What this leaves out is the kernel and the event loop's datagram
handling (recvfrom, sendto, epoll: see bench/dns).

    python -m tidegate.bench.dns_cpu [--queries 200000] [--profile] [--cookie]
    python -m tidegate.bench.dns_cpu --callgrind   # instructions per query (valgrind), steady

--callgrind runs this module twice under valgrind's callgrind (--queries and 3x as many) and
prints the difference per query: the fixed cost of starting Python and building the service drops
out, and an instruction count does not move with the machine's load.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.message

from tidegate.config.model import Config
from tidegate.control.runtime.pools import build_pools
from tidegate.dns.service import DnsService, _Udp
from tidegate.service import StandaloneHost

CLIENT = ("127.0.0.1", 40000)
INSTANCES = [("127.0.0.11", 1), ("127.0.0.12", 2), ("127.0.0.13", 3), ("127.0.0.14", 4)]


class _Transport:
    """Just what the UDP protocol calls on its transport."""

    def __init__(self) -> None:
        self.sent = 0
        self.last = b""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1
        self.last = data


def _config() -> Config:
    return Config.model_validate(
        {
            "pools": [
                {"name": "web", "instances": [{"address": f"{ip}:80", "weight": w} for ip, w in INSTANCES]}
            ],
            "dns": {
                "listen": "127.0.0.1:0",
                "zone": "example.test.",
                "nameservers": ["ns1.example.test."],
                "negative_ttl": 60,
                "records": [{"name": "www.example.test.", "pool": "web", "ttl": 30, "answers": 1}],
            },
        }
    )


def queries(cookie: bool = False, n: int = 1000) -> list[bytes]:
    """`n` distinct packets (ids differ) in the bench's mix: 9 of 10 for the weighted name."""
    options: list[dns.edns.Option] = [
        dns.edns.GenericOption(dns.edns.OptionType.COOKIE, bytes.fromhex("24a1b2c3d4e5f607"))
    ]
    out = []
    for i in range(n):
        name = "nope.example.test." if i % 10 == 9 else "www.example.test."
        q = dns.message.make_query(
            name, "A", use_edns=0 if cookie else False, options=options if cookie else None
        )
        q.id = (i * 7919) & 0xFFFF
        out.append(q.to_wire())
    return out


def service() -> tuple[DnsService, _Udp, _Transport]:
    cfg = _config()
    assert cfg.dns is not None
    svc = DnsService(cfg.dns, StandaloneHost(cfg, build_pools(cfg)))
    proto = _Udp(svc)
    transport = _Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return svc, proto, transport


def measure(count: int, cookie: bool = False) -> float:
    """CPU seconds per query (process time, so other tenants of the machine do not count)."""
    svc, proto, transport = service()
    packets = queries(cookie)
    received = proto.datagram_received
    for wire in packets:  # warm: the packet cache holds every answer shape
        received(wire, CLIENT)
    transport.sent = 0
    n = len(packets)
    t0 = time.process_time()
    for i in range(count):
        received(packets[i % n], CLIENT)
    elapsed = time.process_time() - t0
    if transport.sent != count:
        raise RuntimeError(f"only {transport.sent} of {count} queries answered")
    if svc.zone.figures.internal_errors:
        raise RuntimeError("internal errors while answering")
    return elapsed / count


def callgrind(count: int, cookie: bool) -> float:
    """Instructions per query: callgrind totals at 3 * count and count queries, differenced."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (count, 3 * count):
            out = Path(tmp) / f"cg.{n}"
            cmd = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "tidegate.bench.dns_cpu",
                "--queries",
                str(n),
                "--repeat",
                "1",
                *(["--cookie"] if cookie else []),
            ]
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
            if m is None:
                raise RuntimeError("no totals in callgrind's output")
            totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / (2 * count)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.bench.dns_cpu", description=__doc__)
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs; the best is shown (default 5)")
    ap.add_argument("--cookie", action="store_true", help="a DNS cookie option in every query")
    ap.add_argument("--profile", action="store_true", help="cProfile one run, top functions by own time")
    ap.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions per query under valgrind (default 20,000 queries)",
    )
    args = ap.parse_args(argv)
    if args.callgrind:
        count = args.queries if args.queries != ap.get_default("queries") else 10_000
        per = callgrind(count, args.cookie)
        print(f"DNS instructions per query (callgrind, {count}-{3 * count}): {per:,.0f}")
        return 0
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        measure(args.queries, args.cookie)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    runs = [measure(args.queries, args.cookie) for _ in range(args.repeat)]
    runs_us = ", ".join(f"{r * 1e6:.2f}" for r in runs)
    print(f"DNS CPU per query: best {min(runs) * 1e6:.2f} us (runs: {runs_us})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
