"""`tidegate run` with a [dns] section: real health checks take a failed instance out of the
answers within fall x interval, and SIGHUP reloads the zone (new record, serial bumped)."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from tidegate.testing.process import Proc

INTERVAL, FALL = 0.2, 2


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Three TCP listeners on 127.0.0.2-4 standing in for instances (health type tcp)."""
    socks = []
    for i in (2, 3, 4):
        s = socket.socket()
        s.bind((f"127.0.0.{i}", 0))
        s.listen(64)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


def _config(socks: list[socket.socket], extra: str = "") -> str:
    instances = ", ".join('{{ address = "{}:{}" }}'.format(*s.getsockname()) for s in socks)
    return f"""
[[pools]]
name = "web"
instances = [{instances}]
[pools.health]
type = "tcp"
interval = "{int(INTERVAL * 1000)}ms"
timeout = "150ms"
rise = 1
fall = {FALL}

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]

[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 5
answers = 3
{extra}"""


def _answer(host: str, port: int, name: str = "www.example.test.") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=5)


def _ips(r: dns.message.Message) -> set[str]:
    return {rd.address for rrset in r.answer for rd in rrset}


def test_health_check_failure_leaves_the_answers(
    start_tidegate: Callable[..., Proc], listeners: list[socket.socket]
) -> None:
    proc = start_tidegate(_config(listeners))
    host, port = proc.address("dns")
    assert _ips(_answer(host, port)) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    gone = listeners[1]
    address = "{}:{}".format(*gone.getsockname())
    gone.close()
    t0 = time.monotonic()
    deadline = t0 + 10
    while "127.0.0.3" in _ips(_answer(host, port)):
        assert time.monotonic() < deadline, proc.output()
    took = time.monotonic() - t0
    # Taken out by the health verdict (the event), not by anything else; how fast the verdict comes
    # is rise/fall's own test (tests/health), not a wall-clock bound on a loaded machine.
    proc.wait_for(rf"pool \S+: {address} up -> down", timeout=5)
    print(f"dns: removed from answers {took:.3f}s after the failure (fall x interval = {FALL * INTERVAL}s)")
    assert _ips(_answer(host, port)) == {"127.0.0.2", "127.0.0.4"}


def test_sighup_reloads_the_zone(start_tidegate: Callable[..., Proc], listeners: list[socket.socket]) -> None:
    proc = start_tidegate(_config(listeners))
    host, port = proc.address("dns")
    soa = dns.query.udp(dns.message.make_query("example.test.", "SOA"), host, port=port, timeout=5)
    serial = soa.answer[0][0].serial
    assert _answer(host, port, "api.example.test.").rcode() == dns.rcode.NXDOMAIN
    path = proc.config_path  # type: ignore[attr-defined]
    path.write_text(_config(listeners, '[[dns.records]]\nname = "api.example.test."\npool = "web"\n'))
    proc.signal(signal.SIGHUP)
    proc.wait_for("tidegate: reloaded")
    assert len(_ips(_answer(host, port, "api.example.test."))) == 2
    soa = dns.query.udp(dns.message.make_query("example.test.", "SOA"), host, port=port, timeout=5)
    assert soa.answer[0][0].serial == serial + 1


def test_admin_drain_and_api_pools(
    start_tidegate: Callable[..., Proc], listeners: list[socket.socket]
) -> None:
    admin = '[admin]\nlisten = "127.0.0.1:0"\n'
    proc = start_tidegate(admin + _config(listeners))
    host, port = proc.address("dns")
    ahost, aport = proc.address("admin")
    base = f"http://{ahost}:{aport}"
    address = "{}:{}".format(*listeners[0].getsockname())
    assert "127.0.0.2" in _ips(_answer(host, port))
    req = urllib.request.Request(f"{base}/api/pools/web/instances/{address}/drain", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    # Drained: out of the very next answer.
    assert _ips(_answer(host, port)) == {"127.0.0.3", "127.0.0.4"}
    with urllib.request.urlopen(f"{base}/api/pools", timeout=10) as resp:
        pools = json.load(resp)
    pools = pools["pools"] if isinstance(pools, dict) else pools
    (web,) = [p for p in pools if p["name"] == "web"]
    facts = web["dns"]
    assert facts["max_ttl"] == 5 and facts["zone"] == "example.test."
    # The admin API hands each instance its own part: pools[i]["instances"][j]["dns"].
    (mine,) = [i["dns"] for i in web["instances"] if i["address"] == address]
    assert mine["in_answers"] is False and mine["ip"] == "127.0.0.2"
    assert mine["answered"] >= 1 and mine["last_answered_s_ago"] is not None
    assert sorted(facts["in_answers"]) == ["127.0.0.3", "127.0.0.4"]
    assert facts["records"]["www.example.test."]["queries"] == 2


def _reload(proc: Proc, text: str) -> int:
    proc.config_path.write_text(text)  # type: ignore[attr-defined]
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for_new(r"tidegate: reloaded|reload refused", mark)
    return mark


def test_sighup_starts_an_added_dns_section_and_stops_a_removed_one(
    start_tidegate: Callable[..., Proc], listeners: list[socket.socket]
) -> None:
    full = _config(listeners)
    pools_only = full[: full.index("[dns]")]
    proc = start_tidegate(pools_only)
    assert "dns" not in proc.listening
    mark = _reload(proc, full)
    proc.wait_for_new(r"tidegate: dns listening on", mark, timeout=5)
    host, port = proc.address("dns")
    assert len(_ips(_answer(host, port))) == 3
    mark = _reload(proc, pools_only)
    proc.wait_for_new(r"dns: stopped", mark, timeout=10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.connect((host, port))  # connected: the ICMP port-unreachable comes back as an error
        udp.send(dns.message.make_query("www.example.test.", "A").to_wire())
        with pytest.raises(ConnectionRefusedError):
            udp.recv(512)


def test_sighup_with_a_new_dns_listen_address_moves_the_listener(
    start_tidegate: Callable[..., Proc], listeners: list[socket.socket]
) -> None:
    proc = start_tidegate(_config(listeners))
    host, port = proc.address("dns")
    mark = _reload(proc, _config(listeners).replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.5:0"'))
    moved = proc.wait_for_new(r"tidegate: dns listening on 127\.0\.0\.5:(\d+)", mark, timeout=5)
    assert len(_ips(_answer("127.0.0.5", int(moved.group(1))))) == 3
    proc.wait_for_new(r"dns: stopped", mark, timeout=10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
