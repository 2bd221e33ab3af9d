"""The director end to end, for real packets: per mode (DR, TUN, NAT) a network of namespaces
with a client, the director (`tidegate run` with [lvs]) and three real servers (Python's
http.server), and a real client (curl).

Per mode: requests succeed and round-robin spreads them evenly; a capture on the director
(tcpdump -p) shows the replies bypass it in DR and TUN and pass it in NAT; a quiesce (weight 0)
sends no new connection to the server while an open one finishes with no reset; a killed real
server is taken out by its health checks (run from the director's namespace, on the servers'
own addresses) and requests keep succeeding.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidegate.testing.netns import CLIENT_IP, DIRECTOR_IP, VIP, Topology, can_make_namespaces
from tidegate.testing.process import Proc

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent
_REASON = can_make_namespaces()


def config(topo: Topology, weights: dict[str, int] | None = None) -> str:
    weights = weights or {}
    insts = ", ".join(f'{{ address = "{ip}:80", weight = {weights.get(ip, 1)} }}' for ip in topo.server_ips)
    return f"""
[admin]
listen = "127.0.0.1:9900"

[[pools]]
name = "web"
scheduler = "round-robin"
instances = [ {insts} ]
[pools.health]
type = "http"
path = "/healthz"
interval = "0.2s"
timeout = "3s"
rise = 1
fall = 2

[lvs]
mode = "{topo.mode}"
vip = "{VIP}:80"
interface = "eth0"
pool = "web"
"""


class Lab:
    def __init__(self, topo: Topology, tmp: Path) -> None:
        self.topo = topo
        self.tmp = tmp
        self.servers: dict[str, Proc] = {}
        self.names = {ip: f"rs{i + 1}" for i, ip in enumerate(topo.server_ips)}
        self.config_path = tmp / "lvs.toml"
        self.director: Proc | None = None

    def start(self) -> Lab:
        topo = self.topo
        for ns, ip in zip(topo.servers, topo.server_ips, strict=True):
            self.servers[ip] = topo.python(ns, str(HERE / "rs_app.py"), self.names[ip], "80")
        setup = ["--mode", topo.mode, "--vip", VIP, "--apply"]  # no --undo: the namespaces go away whole
        setups = [
            topo.python(ns, "-m", "tidegate", "lvs-realserver", *setup, "--state", str(self.tmp / f"undo-{ns}.json"))
            for ns in (topo.servers if topo.mode != "nat" else ())
        ]
        for p in setups:
            p.wait_for("lvs-realserver ready")
        for p in self.servers.values():
            p.wait_for("rs ready")
        self.config_path.write_text(config(topo))
        self.director = topo.python(topo.director, "-m", "tidegate", "run", str(self.config_path))
        self.director.wait_for("tidegate: ready")
        return self

    def curl(self, n: int) -> Counter[str]:
        """n requests, one connection each; the names of the servers that answered."""
        res = self.topo.run(
            self.topo.client,
            ["curl", "-sS", "-m", "5", "-H", "Connection: close", *[f"http://{VIP}/"] * n],
        )
        where = self.director.output() if self.director else ""
        assert res.returncode == 0, f"{res.stderr}\n{where}"
        got = Counter(res.stdout.split())
        assert sum(got.values()) == n, f"{res.stdout}\n{where}"
        return got

    def capture(self, ns: str, expr: str) -> Proc:
        """tcpdump -p on ns's eth0; also catches the marker datagram that `captured` sends."""
        proc = self.topo.start(
            ns, ["tcpdump", "-p", "-n", "-l", "--immediate-mode", "-i", "eth0", f"({expr}) or udp port 9"]
        )
        proc.wait_for("listening on")
        return proc

    def captured(self, proc: Proc) -> list[str]:
        """The capture's packet lines up to now: a marker datagram from the client to the director
        is sent, and once tcpdump shows it, everything before it has been shown too."""
        self.topo.run(self.topo.client, ["bash", "-c", f"echo mark > /dev/udp/{DIRECTOR_IP}/9"])
        proc.wait_for(rf"{re.escape(CLIENT_IP)}\.\d+ > {re.escape(DIRECTOR_IP)}\.9: UDP")
        proc.stop()
        return [
            line
            for line in proc.lines
            if re.match(r"^\d\d:\d\d:\d\d\.\d+ IP ", line) and ".9: UDP" not in line
        ]

    def admin(self, method: str, path: str, body: str | None = None) -> Any:
        """The director's admin API, from inside its namespace."""
        argv = ["curl", "-sS", "-X", method, f"http://127.0.0.1:9900{path}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", body]
        res = self.topo.run(self.topo.director, argv)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def instance(self, ip: str) -> dict[str, Any]:
        (pool,) = self.admin("GET", "/api/pools")["pools"]
        inst: dict[str, Any] = next(i for i in pool["instances"] if i["address"] == f"{ip}:80")
        return inst

    def reload(self, weights: dict[str, int]) -> None:
        assert self.director is not None
        self.config_path.write_text(config(self.topo, weights))
        mark = len(self.director.lines)
        self.director.signal(__import__("signal").SIGHUP)
        self.director.wait_for("tidegate: reloaded")
        assert mark <= len(self.director.lines)


@pytest.fixture(scope="module", params=["dr", "tun", "nat"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if _REASON is not None:
        pytest.skip(_REASON)
    topo = Topology(request.param)
    try:
        topo.build()
        yield Lab(topo, tmp_path_factory.mktemp(f"lvs-{request.param}")).start()
    finally:
        topo.close()


def test_requests_spread_and_replies_take_the_mode_s_path(lab: Lab) -> None:
    topo = lab.topo
    cap = lab.capture(topo.director, f"tcp and host {VIP}")
    got = lab.curl(30)
    lines = lab.captured(cap)
    assert sorted(got) == ["rs1", "rs2", "rs3"]
    assert sorted(got.values()) == [10, 10, 10]
    to_vip = sum(f"> {VIP}.80:" in line for line in lines)
    from_vip = sum(f" IP {VIP}.80 > " in line for line in lines)
    assert to_vip >= 30 * 3  # SYN, ACK, request, ... of every connection reached the director
    if topo.mode == "nat":
        assert from_vip >= 30 * 3  # SYN-ACK, response, FIN: every reply went out from the director
    else:
        assert from_vip == 0, "\n".join(line for line in lines if f" IP {VIP}.80 > " in line)


def test_quiesce_lets_an_open_connection_finish_without_reset(lab: Lab) -> None:
    """What `tidegate upgrade --layer lvs` does: weight 0 through the admin API, then wait for the
    instance's connections to reach 0 in GET /api/pools."""
    topo = lab.topo
    assert lab.director is not None
    fifo = lab.tmp / f"go-{os.getpid()}"
    os.mkfifo(fifo)
    resets = lab.capture(topo.client, "tcp[tcpflags] & tcp-rst != 0")
    holder = topo.start(topo.client, [sys.executable, str(HERE / "hold_client.py"), VIP, str(fifo)])
    name = holder.wait_for(r"first (rs\d)").group(1)
    ip = next(ip for ip, n in lab.names.items() if n == name)
    path = f"/api/pools/web/instances/{ip}:80/weight"
    assert lab.admin("PUT", path, '{"weight": 0}')["weight"] == 0
    held = lab.instance(ip)
    assert held["connections"] == 1 and held["lvs"]["active"] == 1
    got = lab.curl(12)
    assert name not in got and sum(got.values()) == 12
    fifo.write_text("go\n")
    assert holder.wait_for(r"second .*").group(0) == f"second {name} clean"
    lab.director.wait_for(rf"real server {re.escape(ip)}:80 takes no new connections and has none left")
    assert lab.instance(ip)["connections"] == 0
    assert lab.captured(resets) == []
    lab.admin("PUT", path, '{"weight": 1}')
    assert sorted(lab.curl(3).values()) == [1, 1, 1]


def test_director_figures_show_the_reply_path(lab: Lab) -> None:
    """The director's own counters agree with the capture: replies counted only in NAT."""
    figures = [lab.instance(ip)["lvs"] for ip in lab.topo.server_ips]
    assert all(f["conns"] >= 10 and f["in_packets"] >= 30 and f["in_bytes"] > 0 for f in figures)
    if lab.topo.mode == "nat":
        assert all(f["out_packets"] >= 30 and f["out_bytes"] > f["in_bytes"] for f in figures)
    else:
        assert all(f["out_packets"] == 0 and f["out_bytes"] == 0 for f in figures)


def test_killed_real_server_is_taken_out_by_health_checks(lab: Lab) -> None:
    assert lab.director is not None
    victim = lab.topo.server_ips[2]
    lab.servers[victim].popen.kill()
    lab.director.wait_for(rf"pool \S+: {re.escape(victim)}:80 \S+ -> down", timeout=10)
    got = lab.curl(12)
    assert lab.names[victim] not in got
    # Health checks time out only after 3 s, so on a loaded machine no healthy server flaps and
    # round-robin over the two left alternates exactly.
    assert sorted(got.values()) == [6, 6], lab.director.output()
