"""The addresses a pool offers to DNS right now, rebuilt whenever the pool changes.

A DNS answer carries an IP address and no port, so instances are grouped by host: two instances
on 127.0.0.1 (ports 9001 and 9002) are one A record whose weight is the sum of theirs, and that
address stays in the answers while either of them takes work. Hosts that are names rather than IP
addresses are skipped (and listed): resolving them here would block, and an answer that depends
on another resolver's view of the world is not what an authoritative server should hand out.

Eligible instances (up and slow-start, weight > 0) are the ones the data planes pick from, so a
drained, maint or down instance leaves the answers as soon as the pool changes. When no instance
of the pool is eligible but some are down, the answers fall back to the down ones (fail open, as
Envoy's panic threshold and gdnsd do): a client that gets no address at all fails for certain,
while a health check may be wrong. Instances an operator took out (maint, draining) stay out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.rdataclass
import dns.rdatatype
from dns.rdata import Rdata
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.dns.selection import running_sums

A_TYPE = int(dns.rdatatype.A)
AAAA_TYPE = int(dns.rdatatype.AAAA)


@dataclass(frozen=True, slots=True)
class Entry:
    ip: str
    rdata: Rdata
    weight: float
    instances: tuple[str, ...]  # the pool addresses ("host:port") behind this IP


class Candidates:
    """The addresses of one pool; also what every query's draw reads, computed once per change of
    the pool: both families (ANY) and the running sums of the weights (selection.weighted_pick)."""

    __slots__ = ("both", "fail_open", "skipped", "sums_both", "sums_v4", "sums_v6", "v4", "v6")

    def __init__(
        self, v4: tuple[Entry, ...], v6: tuple[Entry, ...], fail_open: bool, skipped: tuple[str, ...]
    ) -> None:
        self.v4 = v4
        self.v6 = v6
        self.fail_open = fail_open  # no instance eligible: these are the down ones
        self.skipped = skipped  # instances whose host is not an IP address
        self.both = v4 + v6
        self.sums_v4 = running_sums([e.weight for e in v4])
        self.sums_v6 = running_sums([e.weight for e in v6])
        self.sums_both = running_sums([e.weight for e in self.both])

    def family(self, rdtype: int) -> tuple[Entry, ...]:
        if rdtype == A_TYPE:
            return self.v4
        if rdtype == AAAA_TYPE:
            return self.v6
        return self.both

    def sums(self, rdtype: int) -> tuple[float, ...]:
        if rdtype == A_TYPE:
            return self.sums_v4
        if rdtype == AAAA_TYPE:
            return self.sums_v6
        return self.sums_both

    @property
    def ips(self) -> frozenset[str]:
        return frozenset(e.ip for e in self.both)


def candidates_of(pool: Pool) -> Candidates:
    members = list(pool)
    chosen = [(i, i.effective_weight) for i in members if i.available]
    fail_open = False
    if not chosen:
        down = [(i, float(i.weight)) for i in members if i.state is State.DOWN and i.weight > 0]
        if down:
            chosen, fail_open = down, True
    elif sum(w for _, w in chosen) <= 0:
        # Every eligible instance is at the very start of its slow-start ramp: weigh them alike
        # rather than answer with nothing.
        chosen = [(i, 1.0) for i, _ in chosen]
    ips = {i.address: _ip(i.host) for i in members}
    by_ip: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[float, list[str]]] = {}
    for inst, weight in chosen:
        ip = ips[inst.address]
        if ip is None:
            continue
        w, names = by_ip.get(ip, (0.0, []))
        names.append(inst.address)
        by_ip[ip] = (w + weight, names)
    v4: list[Entry] = []
    v6: list[Entry] = []
    for ip, (weight, names) in by_ip.items():
        if ip.version == 4:
            v4.append(Entry(str(ip), A(dns.rdataclass.IN, dns.rdatatype.A, str(ip)), weight, tuple(names)))  # type: ignore[no-untyped-call]
        else:
            rd = AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, str(ip))  # type: ignore[no-untyped-call]
            v6.append(Entry(str(ip), rd, weight, tuple(names)))
    skipped = tuple(a for a, ip in ips.items() if ip is None)
    return Candidates(tuple(v4), tuple(v6), fail_open, skipped)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
