"""The zone tidegate is authoritative for, and what it answers for one question.

Theory of operation (RFC 1034 §4.3.2, trimmed to a zone with no delegations or wildcards):
- a name outside the zone: REFUSED (we are nobody's resolver);
- the apex: SOA and NS; A/AAAA only if a record is named at the apex;
- a record's name: A/AAAA from its pool (see `candidates.py`, `selection.py`), other types NODATA;
- an empty non-terminal (a parent of a record's name inside the zone): NODATA (RFC 8020);
- anything else: NXDOMAIN.
Negative answers carry the SOA in the authority section with the TTL negative_ttl (RFC 2308 §3).

The SOA serial starts at the Unix time and goes up by one whenever the set of addresses a record
can answer with changes (an instance drained, failed, added...) or the records are reloaded, so a
secondary or an operator comparing serials sees every change. Changes are noticed lazily through
`Pool.version`, one integer comparison per query. With `workers = N` the main process's zone keeps
the serial and each worker's zone follows it (`follow`): every worker answers with one serial,
whatever it noticed and when it started.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.SOA import SOA

from tidegate.balancing.pool import Pool
from tidegate.config.model import DnsConfig
from tidegate.dns.candidates import Candidates, Entry, candidates_of
from tidegate.dns.figures import Figures
from tidegate.dns.packet_cache import PacketCache
from tidegate.dns.selection import index_at, weighted_sample

IN = dns.rdataclass.IN
A, AAAA, ANY = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY
NS_TTL = 3600
# SOA timers for secondaries; tidegate has none, these are the values RFC 1912 suggests.
REFRESH, RETRY, EXPIRE = 3600, 600, 604800


@dataclass(frozen=True, slots=True)
class RecordSpec:
    name: dns.name.Name
    key: str  # the name as configured, for figures
    pool: str
    ttl: int
    answers: int


@dataclass(slots=True)
class Result:
    rcode: int
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True


class Zone:
    def __init__(
        self,
        cfg: DnsConfig,
        pools: Mapping[str, Pool],
        figures: Figures | None = None,
        rng: random.Random | None = None,
        serial: int | None = None,
    ) -> None:
        self.origin = dns.name.from_text(cfg.zone)
        self.negative_ttl = cfg.negative_ttl
        self.nameservers = [dns.name.from_text(n) for n in cfg.nameservers]
        self.pools = pools
        self.figures = figures if figures is not None else Figures()
        self._random = (rng or random.Random()).random
        self.records: dict[dns.name.Name, RecordSpec] = {}
        self.empty_nonterminals: set[dns.name.Name] = set()
        for rc in cfg.records:
            name = dns.name.from_text(rc.name)
            self.records[name] = RecordSpec(name, rc.name, rc.pool, rc.ttl, rc.answers)
            parent = name
            while parent != self.origin and parent.is_subdomain(self.origin):
                parent = parent.parent()
                self.empty_nonterminals.add(parent)
        self.empty_nonterminals -= set(self.records)
        self.serial = int(time.time()) & 0xFFFFFFFF if serial is None else serial
        self._cache: dict[str, tuple[int, Candidates]] = {}
        # For the packet fast path (packet_cache.py): names as lowercased wire bytes.
        self.origin_wire = self.origin.canonicalize().to_wire()
        self.records_by_wire = {n.canonicalize().to_wire(): spec for n, spec in self.records.items()}
        self.packets = PacketCache()
        self.following = False  # the serial is set by `follow` (a worker's), never bumped here
        self._rebuild_apex()

    # --- the apex ---------------------------------------------------------------------------
    def _rebuild_apex(self) -> None:
        mname = self.nameservers[0] if self.nameservers else self.origin
        rname = dns.name.Name(("hostmaster",)).concatenate(self.origin)
        soa = SOA(IN, dns.rdatatype.SOA, mname, rname, self.serial, REFRESH, RETRY, EXPIRE, self.negative_ttl)  # type: ignore[no-untyped-call]
        self.soa = dns.rrset.from_rdata(self.origin, self.negative_ttl, soa)
        self.ns = dns.rrset.from_rdata_list(
            self.origin,
            NS_TTL,
            [NS(IN, dns.rdatatype.NS, n) for n in self.nameservers],  # type: ignore[no-untyped-call]
        )

    def inherit(self, old: Zone) -> None:
        """Carry the serial and the per-pool address sets over a reload, so that it bumps the
        serial exactly when some answer set changed."""
        self.serial = old.serial
        self.following = old.following
        self._cache = dict(old._cache)
        self._rebuild_apex()

    def bump_serial(self) -> None:
        if not self.following:
            self.serial = (self.serial + 1) & 0xFFFFFFFF
            self._rebuild_apex()
        self.packets.clear()

    def follow(self, serial: int) -> None:
        """Take the serial from the main process (workers = N) from now on."""
        self.following = True
        if serial != self.serial:
            self.serial = serial & 0xFFFFFFFF
            self._rebuild_apex()
            self.packets.clear()

    def candidates(self, pool_name: str) -> Candidates | None:
        pool = self.pools.get(pool_name)
        if pool is None:
            return None
        cached = self._cache.get(pool_name)
        if cached is not None and cached[0] == pool.version:
            return cached[1]
        fresh = candidates_of(pool)
        self._cache[pool_name] = (pool.version, fresh)
        if cached is not None:
            # Rendered answers only hold addresses and the serial, both in their keys, so they
            # stay right; dropping them anyway ties "the pool changed" to "the cache is fresh".
            self.packets.clear()
            if cached[1].ips != fresh.ips:
                self.bump_serial()
        return fresh

    def refresh(self) -> None:
        """Bring the serial up to date with every pool (for SOA answers and the admin API)."""
        for spec in self.records.values():
            self.candidates(spec.pool)

    # --- one question -----------------------------------------------------------------------
    def resolve(
        self, qname: dns.name.Name, qtype: int, qclass: int = IN, picked: tuple[Entry, ...] | None = None
    ) -> Result:
        """`picked`: the addresses `pick` already drew for this question (the fast path draws
        before it knows whether it needs to render); None draws them here."""
        if qclass != IN or not qname.is_subdomain(self.origin):
            return Result(dns.rcode.REFUSED, authoritative=False)
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return Result(dns.rcode.REFUSED)  # no secondaries: nothing to transfer to
        spec = self.records.get(qname)
        answer: list[dns.rrset.RRset] = []
        if qname == self.origin:
            self.refresh()
            if qtype in (dns.rdatatype.SOA, ANY):
                answer.append(self.soa)
            if qtype in (dns.rdatatype.NS, ANY) and self.nameservers:
                answer.append(self.ns)
        if spec is not None and qtype in (A, AAAA, ANY):
            rrsets = self._addresses(spec, qname, qtype, picked)
            if rrsets is None:
                return Result(dns.rcode.SERVFAIL)
            answer.extend(rrsets)
        if answer:
            return Result(dns.rcode.NOERROR, answer)
        if spec is not None or qname == self.origin or qname in self.empty_nonterminals:
            return Result(dns.rcode.NOERROR, authority=[self.soa])  # NODATA
        return Result(dns.rcode.NXDOMAIN, authority=[self.soa])

    def pick(self, spec: RecordSpec, qtype: int) -> tuple[Entry, ...] | None:
        """Draw the addresses for one A/AAAA/ANY question and count it; None: no such pool."""
        cands = self.candidates(spec.pool)
        if cands is None:
            return None
        entries = cands.family(qtype)
        return tuple([entries[i] for i in self.draw(spec, cands, qtype)])

    def draw(self, spec: RecordSpec, cands: Candidates, qtype: int) -> tuple[int, ...]:
        """Draw the addresses for one A/AAAA/ANY question out of `cands`, the pool's candidates as
        `candidates` just gave them, and count it: indices into `cands.family(qtype)`."""
        figs = self.figures
        fig = figs.record(spec.key)
        fig.queries += 1
        now = figs.clock()
        fig.rate.add_at(now)
        entries = cands.family(qtype)
        if not entries:
            return ()
        if cands.fail_open:
            fig.fail_open += 1
        picked: tuple[int, ...]
        if spec.answers == 1:
            sums = cands.sums(qtype)
            total = sums[-1]
            # weighted_pick(sums, self._scaled), without a bound method and a call through it
            picked = (index_at(sums, self._random() * total),) if total > 0 else ()
        else:
            picked = tuple(weighted_sample([e.weight for e in entries], spec.answers, self._scaled))
        answers, last = fig.answers, fig.last_answered
        for i in picked:
            ip = entries[i].ip
            answers[ip] += 1
            last[ip] = now
        return picked

    def _scaled(self, total: float) -> float:
        return self._random() * total

    def _addresses(
        self, spec: RecordSpec, qname: dns.name.Name, qtype: int, picked: tuple[Entry, ...] | None
    ) -> list[dns.rrset.RRset] | None:
        if picked is None:
            picked = self.pick(spec, qtype)
            if picked is None:
                return None
        out: dict[int, dns.rrset.RRset] = {}
        for e in picked:
            rrset = out.get(e.rdata.rdtype)
            if rrset is None:
                rrset = out[e.rdata.rdtype] = dns.rrset.RRset(qname, IN, e.rdata.rdtype)
                rrset.update_ttl(spec.ttl)
            rrset.add(e.rdata)
        return list(out.values())

    def max_ttl(self, pool_name: str) -> int | None:
        ttls = [s.ttl for s in self.records.values() if s.pool == pool_name]
        return max(ttls) if ttls else None
