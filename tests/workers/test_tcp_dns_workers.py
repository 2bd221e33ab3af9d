"""`workers = N` for [[tcp]] and [dns], as for [[http]]: N processes on one address
(SO_REUSEPORT), figures summed by the main process, operator changes reaching every worker, a dead
worker started again. Real processes."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc
from tidegate.testing.wait import until

pytestmark = pytest.mark.timeout(90)


def api(proc: Proc, method: str = "GET", path: str = "/api/pools", body: Any = None) -> Any:
    conn = http.client.HTTPConnection(*proc.address("admin"), timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read()
        assert r.status < 300, (r.status, text)
        return json.loads(text) if text and text[:1] in b"{[" else text.decode()
    finally:
        conn.close()


def pool_view(proc: Proc, name: str = "web") -> dict[str, Any]:
    return next(p for p in api(proc)["pools"] if p["name"] == name)


def worker_pids(proc: Proc, kind: str) -> set[int]:
    children = Path(f"/proc/{proc.popen.pid}/task/{proc.popen.pid}/children").read_text().split()
    out = set()
    for pid in children:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"tidegate.workers.child" in cmd and kind.encode() in cmd:
            out.add(int(pid))
    return out


def metric(proc: Proc, name: str, **labels: str) -> float:
    text = api(proc, path="/metrics")
    total = 0.0
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


# --- [[tcp]] --------------------------------------------------------------------------------------
def tcp_config(a: Backend, b: Backend) -> str:
    return f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [{{ address = "{a.address}" }}, {{ address = "{b.address}" }}]

[[tcp]]
listen = "127.0.0.1:0"
pool = "web"
workers = 2
"""


def through(addr: tuple[str, int], path: str = "/") -> bytes:
    """One HTTP request on a new connection through the TCP proxy (SO_REUSEPORT spreads them)."""
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        assert r.status == 200
        return r.read()
    finally:
        conn.close()


def test_tcp_workers_share_the_address_and_the_figures_are_summed(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(tcp_config(a, b))
        pids = worker_pids(gw, "tcp")
        assert len(pids) == 2
        addr = gw.address("tcp")
        n = 120
        for _ in range(n):
            through(addr)
        view = until(
            lambda: (v := pool_view(gw))["tcp"]["accepted"] == n and v["totals"]["requests"] == n and v
        )
        assert view["tcp"]["connections"] == 0
        assert sum(i["tcp"]["opened"] for i in view["instances"]) == n
        assert view["totals"]["bytes_out"] > 0
        assert view["tcp"]["workers_in_sync"]
        assert metric(gw, "tidegate_tcp_accepted_connections_total", listener="tcp") == n
        # Both workers took connections: each one's own accept count reached the sum.
        assert len(view["tcp"]["workers"]) == 2 and all(w["requests"] > 0 for w in view["tcp"]["workers"])


def test_tcp_drain_reaches_every_worker_and_a_dead_worker_comes_back(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(tcp_config(a, b))
        addr = gw.address("tcp")
        api(gw, "POST", f"/api/pools/web/instances/{a.address}/drain")
        until(lambda: pool_view(gw)["tcp"]["workers_in_sync"])
        assert {through(addr) for _ in range(40)} == {b"b"}
        before = metric(gw, "tidegate_tcp_accepted_connections_total")
        victim = min(worker_pids(gw, "tcp"))
        os.kill(victim, signal.SIGKILL)
        until(lambda: len(worker_pids(gw, "tcp") - {victim}) == 2, timeout=30)
        until(lambda: pool_view(gw)["tcp"]["workers_in_sync"])
        assert {through(addr) for _ in range(40)} == {b"b"}  # the new worker mirrors the drain
        # Counters only grow across the restart.
        until(lambda: metric(gw, "tidegate_tcp_accepted_connections_total") >= before + 40)


# --- [dns] ----------------------------------------------------------------------------------------
def dns_config() -> str:
    return """
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [{ address = "127.0.0.2:80" }, { address = "127.0.0.3:80" }, { address = "127.0.0.4:80" }]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
workers = 2

[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 5
answers = 3
"""


def ask(addr: tuple[str, int], tcp: bool = False) -> set[str]:
    """One query from a new socket (a new source port: SO_REUSEPORT spreads them)."""
    q = dns.message.make_query("www.example.test.", "A")
    r = (
        dns.query.tcp(q, addr[0], port=addr[1], timeout=5)
        if tcp
        else dns.query.udp(q, addr[0], port=addr[1], timeout=5)
    )
    return {rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == dns.rdatatype.A}


def test_dns_workers_answer_on_one_port_and_the_figures_are_summed(start_tidegate) -> None:
    gw = start_tidegate(dns_config())
    pids = worker_pids(gw, "dns")
    assert len(pids) == 2
    addr = gw.address("dns")
    n = 100
    for i in range(n):
        assert ask(addr, tcp=i % 10 == 0) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    view = until(lambda: (v := pool_view(gw))["dns"]["records"]["www.example.test."]["queries"] == n and v)
    record = view["dns"]["records"]["www.example.test."]
    assert sum(record["answers_per_address"].values()) == 3 * n
    assert all(i["dns"]["last_answered_s_ago"] is not None for i in view["instances"])
    assert metric(gw, "tidegate_dns_queries_total", record="www.example.test.") == n
    assert metric(gw, "tidegate_dns_packets_total", transport="tcp") == n // 10
    # Each worker answered some: both sockets got datagrams from the 90 source ports.
    assert len(view["dns"]["workers"]) == 2 and all(w["pid"] in pids for w in view["dns"]["workers"])


def test_dns_drain_leaves_every_workers_answers(start_tidegate) -> None:
    gw = start_tidegate(dns_config())
    addr = gw.address("dns")
    api(gw, "POST", "/api/pools/web/instances/127.0.0.3:80/drain")
    until(lambda: pool_view(gw)["dns"]["workers_in_sync"])
    answers = [ask(addr) for _ in range(40)]
    assert all(a == {"127.0.0.2", "127.0.0.4"} for a in answers), answers


def test_a_workers_section_binds_its_port_for_every_worker() -> None:
    from tidegate.config.model import DnsConfig
    from tidegate.dns.worker_kind import KIND

    cfg = DnsConfig.model_validate(
        {"listen": "127.0.0.1:0", "zone": "example.test.", "nameservers": ["ns1.example.test."], "workers": 3}
    )
    sets = KIND.bind(cfg, 3)
    try:
        ports = {s.getsockname()[1] for pair in sets for s in pair}
        kinds = [[s.type for s in pair] for pair in sets]
        assert len(ports) == 1
        assert kinds == [[socket.SOCK_DGRAM, socket.SOCK_STREAM]] * 3
    finally:
        for pair in sets:
            for s in pair:
                s.close()


def test_tcp_workers_each_pause_at_their_own_max_connections(start_tidegate) -> None:
    """max_connections counts per worker process; each worker's pauses reach the summed metric."""
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(tcp_config(a, b) + "max_connections = 1\n")
        addr = gw.address("tcp")
        held = socket.create_connection(addr, timeout=10)
        try:
            held.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert held.recv(64).startswith(b"HTTP/1.1 200")
            # The worker that took it holds its one connection: it stopped accepting.
            until(
                lambda: metric(gw, "tidegate_accept_pauses_total", listener="tcp", reason="max_connections")
                == 1
            )
        finally:
            held.close()
        for _ in range(20):  # the paused worker accepts again: every new client is served
            through(addr)
        assert metric(gw, "tidegate_accept_errors_total", listener="tcp") == 0
