"""A small network of Linux network namespaces for tests and benchmarks of the LVS director:
a client, a director and real servers on one bridge (in a namespace of its own, so the host's
network is never touched), addressed in 198.18.0.0/15 (RFC 2544 benchmarking space) only.

Layout (VIP 198.18.0.100 on no host: the director answers ARP for it):
    client   198.18.0.1/24
    director 198.18.0.2/24, and for NAT also 198.18.1.1/24 (the real servers' default gateway)
    rsN      198.18.0.1N/24 (DR, TUN) or 198.18.1.1N/24 with default via 198.18.1.1 (NAT)

Names are unique per build (a random tag), and `close()` kills every process left in the
namespaces and deletes them; use it in a `finally` (the `lab` helpers do).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tidegate.testing.process import Proc, child_env

VIP = "198.18.0.100"
CLIENT_IP = "198.18.0.1"
DIRECTOR_IP = "198.18.0.2"
NAT_GATEWAY = "198.18.1.1"


def can_make_namespaces() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"tgprobe{secrets.token_hex(3)}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")


class Topology:
    def __init__(self, mode: str, servers: int = 3) -> None:
        self.mode = mode
        self.tag = secrets.token_hex(3)
        t = self.tag
        self.switch = f"tg{t}sw"
        self.client = f"tg{t}cl"
        self.director = f"tg{t}dr"
        self.servers = [f"tg{t}r{i + 1}" for i in range(servers)]
        subnet = "198.18.1" if mode == "nat" else "198.18.0"
        self.server_ips = [f"{subnet}.{11 + i}" for i in range(servers)]
        self.procs: list[Proc] = []
        self._made: list[str] = []

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, self.client, self.director, *self.servers]

    def build(self) -> Topology:
        for ns in self.namespaces:
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.namespaces[1:]):
            port = f"p{i}"
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", self.client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        ip("-n", self.director, "addr", "add", f"{DIRECTOR_IP}/24", "dev", "eth0")
        if self.mode == "nat":
            ip("-n", self.director, "addr", "add", f"{NAT_GATEWAY}/24", "dev", "eth0")
        for ns, addr in zip(self.servers, self.server_ips, strict=True):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            if self.mode == "nat":
                ip("-n", ns, "route", "add", "default", "via", NAT_GATEWAY)
        return self

    # --- processes ----------------------------------------------------------------------------
    def argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def start(self, ns: str, argv: Sequence[str], cwd: str | None = None) -> Proc:
        proc = Proc(self.argv(ns, argv), env=child_env(), cwd=cwd)
        self.procs.append(proc)
        return proc

    def python(self, ns: str, *args: str) -> Proc:
        return self.start(ns, [sys.executable, *args])

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(ns, argv), capture_output=True, text=True, timeout=timeout, env=child_env()
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
        for ns in self._made:
            # Anything still running in there (a test that failed half-way) goes first.
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()

    def __enter__(self) -> Topology:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
