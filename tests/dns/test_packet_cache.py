"""The packet cache: a cached response is the very bytes the full dnspython path renders, the
client's id and letter case are echoed, the draw still happens per query, a drain empties it,
and it stays bounded."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from tidegate.balancing.state import State
from tidegate.config.load import parse_config
from tidegate.control.runtime.pools import build_pools
from tidegate.dns import handler
from tidegate.dns.packet_cache import MAX_BYTES, MAX_ENTRIES, Cached, plain_query
from tidegate.dns.zone import Zone
from tidegate.testing.dns_server import DnsServer

from .test_server import CONFIG, addresses

NAMES = [
    "www.example.test.",
    "one.example.test.",
    "example.test.",
    "deep.example.test.",  # an empty non-terminal
    "big.deep.example.test.",
    "nope.example.test.",
    "www.example.org.",
]
TYPES = ["A", "AAAA", "ANY", "MX", "SOA", "NS", "TXT", "AXFR"]


def _zone(seed: int) -> Zone:
    cfg = parse_config(CONFIG)
    assert cfg.dns is not None
    return Zone(cfg.dns, build_pools(cfg), rng=random.Random(seed), serial=1000)


def _mixed_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def _query(rng: random.Random) -> bytes:
    name = _mixed_case(rng.choice(NAMES[:-1] if rng.random() < 0.9 else NAMES), rng)
    edns = rng.choice([-1, -1, 0])
    q = dns.message.make_query(
        name,
        rng.choice(TYPES),
        use_edns=edns,
        payload=rng.choice([512, 1232, 4096]),
        want_dnssec=edns == 0 and rng.random() < 0.3,
        id=rng.randrange(65536),
    )
    if rng.random() < 0.2:
        q.flags &= ~dns.flags.RD
    return q.to_wire()


def test_cached_answers_are_the_full_paths_bytes() -> None:
    cached, full = _zone(5), _zone(5)  # the same draws in the same order
    rng = random.Random(1)
    for i in range(6000):
        wire = _query(rng)
        transport = "tcp" if i % 7 == 0 else "udp"
        expected = handler._handle(wire, full, transport)  # the dnspython path, no cache
        got = handler.handle(wire, cached, transport)
        assert got == expected, (i, dns.message.from_wire(wire).question)
    assert cached.figures.cache_hits > 3000 and cached.figures.cache_misses > 100
    # The figures count a hit as the full path counts the query.
    assert cached.figures.responses == full.figures.responses
    assert cached.figures.truncated == full.figures.truncated > 0
    for name in ("www.example.test.", "one.example.test.", "big.deep.example.test."):
        a, b = cached.figures.records[name], full.figures.records[name]
        assert (a.queries, a.answers, a.fail_open) == (b.queries, b.answers, b.fail_open)
    assert cached.serial == full.serial


def test_case_and_id_are_echoed_on_a_hit() -> None:
    zone = _zone(1)
    for _ in range(20):  # warm: every answer of "one" is cached in lower case
        handler.handle(dns.message.make_query("one.example.test.", "A").to_wire(), zone)
    hits = zone.figures.cache_hits
    q = dns.message.make_query("oNe.ExAMple.tEsT.", "A", id=4242)
    r = dns.message.from_wire(handler.handle(q.to_wire(), zone) or b"")
    assert zone.figures.cache_hits == hits + 1
    assert r.id == 4242 and r.question[0].name.to_text() == "oNe.ExAMple.tEsT."
    assert r.answer[0].name.to_text() == "oNe.ExAMple.tEsT."
    assert r.authority == [] and len(addresses(r)) == 1


def test_case_is_echoed_through_the_server(dns_server: Callable[[str], DnsServer]) -> None:
    s = dns_server(CONFIG)
    rng = random.Random(3)
    for _ in range(200):
        name = _mixed_case("www.example.test.", rng)
        q = dns.message.make_query(name, "A")
        r = dns.query.udp(q, s.host, port=s.port, timeout=5)
        assert r.id == q.id and r.question[0].name.to_text() == name
        assert r.answer[0].name.to_text() == name
    assert s.service.zone.figures.cache_hits > 150


def test_draw_still_happens_per_query() -> None:
    zone = _zone(9)
    first: Counter[str] = Counter()
    wire = dns.message.make_query("one.example.test.", "A").to_wire()
    n = 6000
    for _ in range(n):
        (ip,) = addresses(dns.message.from_wire(handler.handle(wire, zone) or b""))
        first[ip] += 1
    # weights 1:2:3 over the three IPv4 addresses, and only three distinct responses to cache
    for ip, weight in (("127.0.0.1", 1), ("127.0.0.2", 2), ("127.0.0.3", 3)):
        assert abs(first[ip] / n - weight / 6) < 0.03, first
    assert zone.figures.cache_misses == 3 and zone.figures.cache_hits == n - 3


def test_a_drain_empties_the_cache_and_leaves_the_answers() -> None:
    zone = _zone(2)
    wire = dns.message.make_query("www.example.test.", "A").to_wire()
    for _ in range(100):
        handler.handle(wire, zone)
    assert len(zone.packets) == 6  # ordered pairs out of three addresses
    serial = zone.serial
    pool = zone.pools["web"]
    inst = pool.get("127.0.0.2:9001")
    assert inst is not None
    pool.set_state(inst, State.DRAINING, "test")
    seen = set()
    for i in range(100):
        seen.update(addresses(dns.message.from_wire(handler.handle(wire, zone) or b"")))
        if i == 0:
            assert len(zone.packets) == 1 and zone.serial == serial + 1
    assert seen == {"127.0.0.1", "127.0.0.3"} and len(zone.packets) == 2


def test_the_cache_is_bounded() -> None:
    zone = _zone(4)
    # every payload size is another key (the OPT record is part of it)
    for payload in range(512, 512 + MAX_ENTRIES + 500):
        q = dns.message.make_query("nope.example.test.", "A", use_edns=0, payload=payload)
        handler.handle(q.to_wire(), zone)
    assert len(zone.packets) == MAX_ENTRIES
    # an answer bigger than the biggest UDP answer is not kept
    zone.packets.clear()
    zone.packets.put("big", Cached(bytes(MAX_BYTES + 1), "NOERROR", False))
    zone.packets.put("fits", Cached(bytes(MAX_BYTES), "NOERROR", False))
    assert zone.packets.get("big") is None and zone.packets.get("fits") is not None


def test_only_plain_queries_take_the_fast_path() -> None:
    plain = dns.message.make_query("www.example.test.", "A")
    assert plain_query(plain.to_wire()) is not None
    assert plain_query(dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire()) is not None
    wire = plain.to_wire()
    two = dns.message.make_query("www.example.test.", "A")
    two.question.append(two.question[0])
    cookie = dns.message.make_query(
        "www.example.test.", "A", use_edns=0, options=[dns.edns.ECSOption("10.0.0.0", 8)]
    )
    notify = dns.message.make_query("www.example.test.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    pointer = wire[:12] + b"\xc0\x0c" + wire[-4:]
    for bad in (
        wire + b"\x00",  # trailing byte
        wire[:-1],  # cut short
        pointer,
        two.to_wire(),
        cookie.to_wire(),  # EDNS options go the full way
        dns.message.make_query("www.example.test.", "A", use_edns=1).to_wire(),  # BADVERS
        notify.to_wire(),
        dns.message.make_query("www.example.test.", "OPT").to_wire(),
        bytes([wire[0], wire[1], wire[2] | 0x80]) + wire[3:],  # a response
    ):
        assert plain_query(bad) is None, bad
    assert dns.rdatatype.OPT  # the names used above exist in this dnspython


def test_the_first_address_follows_the_weights_with_two_answers() -> None:
    # "www" answers two of three addresses weighted 1:2:3; the first of them is the one most
    # clients use, so it must follow the weights (dnspython's default shuffle on rendering made
    # it uniform). P(first) = weight / 6.
    zone = _zone(6)
    wire = dns.message.make_query("www.example.test.", "A").to_wire()
    first: Counter[str] = Counter()
    n = 6000
    for _ in range(n):
        first[addresses(dns.message.from_wire(handler.handle(wire, zone) or b""))[0]] += 1
    for ip, weight in (("127.0.0.1", 1), ("127.0.0.2", 2), ("127.0.0.3", 3)):
        assert abs(first[ip] / n - weight / 6) < 0.03, first


def _first_ips(zone: Zone, wire: bytes, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        seen.update(addresses(dns.message.from_wire(handler.handle(wire, zone) or b"")))
    return seen


def test_a_repeated_query_is_answered_from_its_plan_until_the_pool_changes() -> None:
    # The same bytes after the id: answered from the plan (no parse, no render), the draw still
    # per query; every change of the pool (health, operator, weight) voids the plan at once.
    zone = _zone(12)
    pool = zone.pools["web"]
    wire = dns.message.make_query("one.example.test.", "A", id=7).to_wire()
    assert set(_first_ips(zone, wire, 300)) == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    assert len(zone.packets.udp) == 1 and zone.figures.cache_misses == 3
    other_id = bytes([0, 8]) + wire[2:]
    r = dns.message.from_wire(handler.handle(other_id, zone) or b"")
    assert r.id == 8 and zone.figures.cache_misses == 3

    two = pool.get("127.0.0.2:9001")
    three = pool.get("127.0.0.3:9001")
    assert two is not None and three is not None
    pool.set_state(two, State.DOWN, "health check")  # a failed health check
    assert set(_first_ips(zone, wire, 300)) == {"127.0.0.1", "127.0.0.3"}
    pool.set_state(three, State.MAINT, "operator")  # an operator's change
    assert set(_first_ips(zone, wire, 100)) == {"127.0.0.1"}
    pool.set_state(three, State.UP, "operator")
    pool.set_weight(three, 0)
    assert set(_first_ips(zone, wire, 100)) == {"127.0.0.1"}
    pool.set_weight(three, 1)
    pool.set_state(two, State.UP, "health check")
    seen = _first_ips(zone, wire, 4000)
    for ip, weight in (("127.0.0.1", 1), ("127.0.0.2", 2), ("127.0.0.3", 1)):
        assert abs(seen[ip] / 4000 - weight / 4) < 0.04, seen


def test_a_plan_is_dropped_with_the_serial_and_apex_answers_follow_it() -> None:
    zone = _zone(13)
    soa = dns.message.make_query("example.test.", "SOA").to_wire()

    def serial() -> int:
        r = dns.message.from_wire(handler.handle(soa, zone) or b"")
        return int(r.answer[0][0].serial)

    assert serial() == serial() == 1000 and len(zone.packets.udp) == 1
    pool = zone.pools["web"]
    inst = pool.get("127.0.0.1:9001")
    assert inst is not None
    pool.set_state(inst, State.DRAINING, "operator")  # no query drew since: the apex notices
    assert serial() == 1001


def test_the_plans_are_bounded() -> None:
    zone = _zone(14)
    for i in range(MAX_ENTRIES + 100):
        q = dns.message.make_query("nope.example.test.", "A", use_edns=0, payload=512 + i)
        handler.handle(q.to_wire(), zone)
        handler.handle(q.to_wire(), zone)
    assert len(zone.packets.udp) <= MAX_ENTRIES
    assert sum(len(p.answers) for p in zone.packets.udp.values()) <= MAX_ENTRIES
