"""The DNS layer through real sockets: dnspython and `dig` against a running service."""

from __future__ import annotations

import re
import socket
import subprocess
from collections import Counter
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from tidegate.balancing.state import State
from tidegate.testing.dns_server import DnsServer

MANY = 60
CONFIG = f"""
[[pools]]
name = "web"
instances = [
  {{ address = "127.0.0.1:9001", weight = 1 }},
  {{ address = "127.0.0.2:9001", weight = 2 }},
  {{ address = "127.0.0.3:9001", weight = 3 }},
  {{ address = "[::1]:9001" }},
]

[[pools]]
name = "many"
instances = [{", ".join(f'{{ address = "127.0.1.{i}:80" }}' for i in range(1, MANY + 1))}]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test.", "ns2.example.test."]
negative_ttl = 45

[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 30
answers = 2

[[dns.records]]
name = "one.example.test."
pool = "web"
ttl = 5
answers = 1

[[dns.records]]
name = "big.deep.example.test."
pool = "many"
ttl = 60
answers = {MANY}
"""
WEB_V4 = {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
Start = Callable[[str], DnsServer]


def ask(s: DnsServer, name: str, rdtype: str = "A", tcp: bool = False, **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    if tcp:
        return dns.query.tcp(q, s.host, port=s.port, timeout=5)
    return dns.query.udp(q, s.host, port=s.port, timeout=5, ignore_trailing=False, raise_on_truncation=False)


def addresses(r: dns.message.Message) -> list[str]:
    return [rd.address for rrset in r.answer for rd in rrset]


def dig(s: DnsServer, *args: str) -> str:
    out = subprocess.run(
        ["dig", f"@{s.host}", "-p", str(s.port), "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_listening_line_and_record_sets(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    assert s.port > 0
    r = ask(s, "www.example.test.")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    got = addresses(r)
    assert len(got) == 2 and len(set(got)) == 2 and set(got) <= WEB_V4
    assert r.answer[0].ttl == 30
    r6 = ask(s, "WWW.Example.TEST.", "AAAA")
    assert addresses(r6) == ["::1"]
    assert r6.answer[0].name.to_text() == "WWW.Example.TEST."
    # Over TCP the same server answers on the same port.
    assert set(addresses(ask(s, "www.example.test.", tcp=True))) <= WEB_V4


def test_dig_sees_the_zone(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    short = dig(s, "www.example.test", "A", "+short").split()
    assert len(short) == 2 and set(short) <= WEB_V4
    assert dig(s, "+tcp", "one.example.test", "A", "+short").split()[0] in WEB_V4
    soa = dig(s, "example.test", "SOA")
    assert "status: NOERROR" in soa and "flags: qr aa" in soa
    assert "ns1.example.test. hostmaster.example.test." in soa
    ns = dig(s, "example.test", "NS", "+short").split()
    assert sorted(ns) == ["ns1.example.test.", "ns2.example.test."]
    assert "status: NXDOMAIN" in dig(s, "nope.example.test")
    assert "status: REFUSED" in dig(s, "www.example.org")
    nodata = dig(s, "www.example.test", "MX")
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata and "AUTHORITY: 1" in nodata


def test_weights_over_ten_thousand_queries(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    seen: Counter[str] = Counter()
    n = 10_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(n):
            q = dns.message.make_query("one.example.test.", "A")
            r = dns.query.udp(q, s.host, port=s.port, timeout=5, sock=sock)
            (ip,) = addresses(r)
            seen[ip] += 1
    shares = {ip: seen[ip] / n for ip in WEB_V4}
    assert abs(shares["127.0.0.1"] - 1 / 6) < 0.03, shares
    assert abs(shares["127.0.0.2"] - 2 / 6) < 0.03, shares
    assert abs(shares["127.0.0.3"] - 3 / 6) < 0.03, shares
    desc = s.call(lambda: s.service.describe_pool("web"))
    assert desc["records"]["one.example.test."]["answers_per_address"] == dict(seen)


def test_drained_maint_and_down_leave_the_answers_at_once(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    pool = s.pool("web")
    serial0 = ask(s, "example.test.", "SOA").answer[0][0].serial

    def set_state(address: str, state: State) -> None:
        inst = pool.get(address)
        assert inst is not None
        s.call(lambda: pool.set_state(inst, state, "test"))

    for address, state in [("127.0.0.2:9001", State.DRAINING), ("127.0.0.3:9001", State.MAINT)]:
        set_state(address, state)
        for _ in range(50):
            assert address.split(":")[0] not in addresses(ask(s, "www.example.test."))
    assert {ip for _ in range(20) for ip in addresses(ask(s, "www.example.test."))} == {"127.0.0.1"}
    serial1 = ask(s, "example.test.", "SOA").answer[0][0].serial
    assert serial1 == serial0 + 2
    # While ::1 takes work the pool has an eligible instance: an A query gets NODATA, and a
    # dual-stack client goes to ::1.
    set_state("127.0.0.1:9001", State.DOWN)
    assert addresses(ask(s, "www.example.test.")) == []
    assert addresses(ask(s, "www.example.test.", "AAAA")) == ["::1"]
    # The last one fails its checks: nothing eligible, so the answer falls back to the down ones
    # (fail open) and says so in the figures; the operator's maint/draining stay out.
    set_state("[::1]:9001", State.DOWN)
    assert addresses(ask(s, "www.example.test.")) == ["127.0.0.1"]
    desc = s.call(lambda: s.service.describe_pool("web"))
    assert desc["fail_open"] is True and desc["records"]["www.example.test."]["fail_open"] == 1
    assert desc["instances"]["127.0.0.2:9001"]["in_answers"] is False
    set_state("127.0.0.1:9001", State.MAINT)
    set_state("[::1]:9001", State.MAINT)
    assert ask(s, "www.example.test.", "AAAA").answer == []
    empty = ask(s, "www.example.test.")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
    assert empty.authority[0].rdtype == dns.rdatatype.SOA
    set_state("127.0.0.2:9001", State.UP)
    assert set(addresses(ask(s, "www.example.test."))) == {"127.0.0.2"}


def test_truncation_and_the_full_answer_over_tcp(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    name = "big.deep.example.test."
    plain = ask(s, name)  # no EDNS: 512 bytes at most
    assert plain.flags & dns.flags.TC and not plain.answer
    small = ask(s, name, use_edns=0, payload=512)
    assert small.flags & dns.flags.TC and not small.answer
    assert small.edns == 0 and small.payload == 1232
    roomy = ask(s, name, use_edns=0, payload=4096)
    assert not roomy.flags & dns.flags.TC and len(addresses(roomy)) == MANY
    full = ask(s, name, tcp=True)
    assert not full.flags & dns.flags.TC and len(set(addresses(full))) == MANY
    shown = dig(s, "+noedns", "+ignore", name)
    assert "flags: qr aa tc" in shown and "ANSWER: 0" in shown
    retried = dig(s, "+noedns", name, "+short").split()  # dig retries over TCP on TC
    assert len(set(retried)) == MANY


def test_refused_outside_the_zone(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    for name in ["www.example.org.", "test.", ".", "example.test.evil."]:
        r = ask(s, name)
        assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA and not r.answer
    chaos = ask(s, "www.example.test.", "TXT", rdclass=dns.rdataclass.CH)
    assert chaos.rcode() == dns.rcode.REFUSED
    assert ask(s, "example.test.", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED


def test_nxdomain_and_nodata_carry_the_soa(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    for name, rdtype, rcode in [
        ("nope.example.test.", "A", dns.rcode.NXDOMAIN),
        ("x.www.example.test.", "A", dns.rcode.NXDOMAIN),
        ("www.example.test.", "MX", dns.rcode.NOERROR),  # NODATA: the name exists
        ("deep.example.test.", "A", dns.rcode.NOERROR),  # empty non-terminal
        ("example.test.", "A", dns.rcode.NOERROR),
    ]:
        r = ask(s, name, rdtype)
        assert r.rcode() == rcode, name
        assert not r.answer and r.flags & dns.flags.AA
        (soa,) = r.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 45 and soa[0].minimum == 45
        assert soa.name.to_text() == "example.test." and soa[0].mname.to_text() == "ns1.example.test."


def test_protocol_edges(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    v1 = ask(s, "www.example.test.", use_edns=1)
    assert v1.rcode() == dns.rcode.BADVERS
    upd = dns.message.make_query("www.example.test.", "A")
    upd.set_opcode(dns.opcode.UPDATE)
    r = dns.query.udp(upd, s.host, port=s.port, timeout=5)
    assert r.rcode() == dns.rcode.NOTIMP
    noq = dns.message.Message()
    r = dns.query.udp(noq, s.host, port=s.port, timeout=5)
    assert r.rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("listen", ["[::1]:0"])
def test_ipv6_listener(dns_server: Start, listen: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    s = dns_server(CONFIG.replace('listen = "127.0.0.1:0"', f'listen = "{listen}"'))
    assert s.host == "::1"
    assert set(addresses(ask(s, "www.example.test."))) <= WEB_V4


def test_figures_in_describe_pool_and_metrics(dns_server: Start) -> None:
    s = dns_server(CONFIG)
    for _ in range(10):
        ask(s, "www.example.test.")
    ask(s, "nope.example.test.")
    desc = s.call(lambda: s.service.describe_pool("web"))
    assert desc["max_ttl"] == 30 and desc["negative_ttl"] == 45
    www = desc["records"]["www.example.test."]
    assert www["queries"] == 10 and sum(www["answers_per_address"].values()) == 20
    assert set(desc["in_answers"]) == WEB_V4 | {"::1"}
    inst = desc["instances"]["127.0.0.1:9001"]
    assert inst["in_answers"] is True and inst["ip"] == "127.0.0.1"
    assert s.call(lambda: s.service.describe_pool("nosuch")) is None
    text = generate_latest(s.runtime.metrics).decode()
    assert 'tidegate_dns_queries_total{record="www.example.test."} 10.0' in text
    assert 'tidegate_dns_responses_total{rcode="NXDOMAIN"} 1.0' in text
    assert "tidegate_dns_internal_errors_total 0.0" in text
    # 11 plain queries: "nope" and each ordered pair of www's addresses rendered once at most
    hits = float(re.search(r'tidegate_dns_packet_cache_total\{result="hit"\} (\S+)', text).group(1))  # type: ignore[union-attr]
    misses = float(re.search(r'tidegate_dns_packet_cache_total\{result="miss"\} (\S+)', text).group(1))  # type: ignore[union-attr]
    assert hits + misses == 11 and 2 <= misses <= 1 + 6
    assert f"tidegate_dns_packet_cache_entries {misses}" in text
