"""[dns] with `workers = N`: one SOA serial whichever worker answers (the main process's, through
drains and a restarted worker), and the packet cache gauge is the workers' sum. Real processes."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

import dns.message
import dns.query
import pytest

from tidegate.testing.process import Proc
from tidegate.testing.wait import until

from ..workers.test_tcp_dns_workers import api, dns_config, pool_view, worker_pids

pytestmark = pytest.mark.timeout(90)


def serials(addr: tuple[str, int], n: int = 40) -> set[int]:
    """The SOA serial as n new sockets see it (new source ports: SO_REUSEPORT spreads them)."""
    out = set()
    for _ in range(n):
        r = dns.query.udp(dns.message.make_query("example.test.", "SOA"), addr[0], port=addr[1], timeout=5)
        out.add(int(r.answer[0][0].serial))
    return out


def gauge(proc: Proc, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", api(proc, path="/metrics"), re.M)
    assert m, name
    return float(m.group(1))


def test_every_worker_answers_the_main_processes_serial(start_tidegate: Callable[..., Proc]) -> None:
    gw = start_tidegate(dns_config())
    addr = gw.address("dns")
    started = time.time()
    (first,) = serials(addr)
    assert first == gauge(gw, "tidegate_dns_soa_serial")

    # A drain: the main process bumps once, every worker says so.
    api(gw, "POST", "/api/pools/web/instances/127.0.0.3:80/drain")
    until(lambda: pool_view(gw)["dns"]["workers_in_sync"])
    assert serials(addr) == {first + 1} and gauge(gw, "tidegate_dns_soa_serial") == first + 1

    # A worker started later (its own clock would give another serial) answers the same one.
    until(lambda: int(time.time()) > int(started))
    victim = min(worker_pids(gw, "dns"))
    os.kill(victim, signal.SIGKILL)
    until(lambda: len(worker_pids(gw, "dns") - {victim}) == 2, timeout=30)
    until(lambda: pool_view(gw)["dns"]["workers_in_sync"])
    until(lambda: serials(addr, 10) == {first + 1}, message="one serial after the restart")
    assert serials(addr) == {first + 1}


def test_the_packet_cache_gauge_is_the_workers_sum(start_tidegate: Callable[..., Proc]) -> None:
    gw = start_tidegate(dns_config())
    addr = gw.address("dns")
    serials(addr, 40)  # every worker caches the SOA answer
    for _ in range(40):
        dns.query.udp(dns.message.make_query("nope.example.test.", "A"), addr[0], port=addr[1], timeout=5)
    # Both workers got queries (40 source ports each time), each keeps an SOA and an NXDOMAIN answer.
    until(lambda: gauge(gw, "tidegate_dns_packet_cache_entries") == 4)
