"""Rendered responses kept for reuse, and the cheap check that says a packet may use them.

Theory of operation (PowerDNS's packet cache, keeping tidegate's per-query draw):
- dnspython parsing and rendering cost ~100 µs a packet, the weighted draw a few µs. So the draw
  still happens for every query, and what is reused is the response dnspython rendered for the
  same question, EDNS options, transport, drawn addresses and zone serial.
- `plain_query` accepts only the common shape: a standard query with one question of plain labels,
  no answer or authority records, and no additional record but an EDNS0 OPT whose options, if
  any, are ones the full path ignores: a DNS cookie (dig sends one by default) or an NSID request.
  Everything else (and every packet it is unsure of) takes the full dnspython path.
- Cookies: tidegate does not implement server cookies, so it answers as a server without them
  (RFC 7873; RFC 6891 §6.1.2: options not understood are ignored): no COOKIE in the answer,
  from the cache or from dnspython alike; a malformed one is FORMERR (the full path says so).
- The key holds every byte of the query except the id, the letter case of the question name and
  the ignored EDNS options: whatever dnspython makes of those bytes, it makes again. The two differences are copied into a
  hit: the id, and the name as the client wrote it (0x20 case randomisation is echoed; the names
  after the question are compression pointers to it, so they follow its case by themselves).
- In front of the keyed responses, plans: by a query's exact bytes after its id (per transport),
  whether it refreshes the serial (the apex) or draws (a record), and the finished response for
  each draw. Same bytes, same plain query, same key: so a repeated query costs a dict lookup, the
  draw and one concatenation. A plan holds the cache's generation, which every clear bumps.
- The zone clears the cache whenever an answer set changes (serial bump, pool version), and the
  serial is part of every key as well. The cache is bounded: entries over `MAX_BYTES` are not
  kept, and past `MAX_ENTRIES` the oldest goes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import unpack_from

import dns.edns
import dns.rdatatype

MAX_ENTRIES = 4096
MAX_BYTES = 1232  # bigger answers (TCP, many addresses) are rare and would make the bound loose
_HEADER = 12
_OPT = dns.rdatatype.OPT
_COOKIE = dns.edns.OptionType.COOKIE
_NSID = dns.edns.OptionType.NSID
_OPT_SIZE = 11  # root name, type, class (payload), TTL (ext. rcode, version, flags), rdlength 0
# Questions the full path answers FORMERR: never cached, so the figures stay the full path's.
_NOT_QUESTIONS = frozenset((dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY))


@dataclass(frozen=True, slots=True)
class PlainQuery:
    name_end: int  # offset just after the question name
    name: bytes  # the question name in wire form, lowercased
    qtype: int
    qclass: int
    rest: bytes  # header bytes 2-12 + question type/class + the OPT record, if any


def plain_query(wire: bytes) -> PlainQuery | None:
    n = len(wire)
    # byte 2: QR and the opcode must be zero; counts: one question, nothing else but an OPT.
    if n < _HEADER + 5 or wire[2] & 0xF8:
        return None
    qd, an, ns, ar = unpack_from("!4H", wire, 4)
    if qd != 1 or an or ns or ar > 1:
        return None
    pos = _HEADER
    length = wire[pos]
    while length:
        if length > 63:  # a compression pointer or a reserved label type
            return None
        pos += length + 1
        if pos >= n:
            return None
        length = wire[pos]
    end = pos + 1
    if end - _HEADER > 255 or end + 4 > n:
        return None
    qtype, qclass = unpack_from("!HH", wire, end)
    if qtype in _NOT_QUESTIONS:
        return None
    tail = end + 4
    if ar:
        if n < tail + _OPT_SIZE or wire[tail] != 0:
            return None
        rtype, _payload, _ercode, version, _flags, rdlen = unpack_from("!HHBBHH", wire, tail + 1)
        if rtype != _OPT or version != 0 or n != tail + _OPT_SIZE + rdlen:
            return None  # BADVERS, trailing bytes, an OPT cut short: the full path
        if rdlen and not _ignored_options(wire, tail + _OPT_SIZE, n):
            return None
        # The options leave no trace in the answer: the key is the one of the same query without.
        rest = wire[2:_HEADER] + wire[end : tail + _OPT_SIZE - 2] + b"\0\0"
    elif n != tail:
        return None  # trailing bytes: the full path answers FORMERR
    else:
        rest = wire[2:_HEADER] + wire[end:]
    return PlainQuery(end, wire[_HEADER:end].lower(), qtype, qclass, rest)


def _ignored_options(wire: bytes, pos: int, end: int) -> bool:
    """True if the OPT rdata wire[pos:end] holds only options that dnspython parses and the full
    path then ignores: a well-formed COOKIE (client cookie, maybe a server cookie) or an empty
    NSID request. A malformed COOKIE (FORMERR), PADDING (the answer is padded) and the rest (ECS
    and others dnspython checks) take the full path."""
    while pos < end:
        if pos + 4 > end:
            return False
        code, size = unpack_from("!HH", wire, pos)
        pos += 4 + size
        if pos > end:
            return False
        if code == _COOKIE:
            if size != 8 and not 16 <= size <= 40:
                return False
        elif code != _NSID or size:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Cached:
    wire: bytes  # as rendered for the first query with this key
    rcode: str  # for the figures, counted again on every hit
    truncated: bool


@dataclass(frozen=True, slots=True)
class Hit:
    tail: bytes  # the response after its id, for one query's exact bytes
    rcode: str
    truncated: bool


class Plan:
    """What a query's exact bytes after its id (`PacketCache.plans`' key) need on the next hit:
    the zone's side effects to repeat (apex: refresh the serial; a record: draw), and the finished
    responses by draw, so a repeated query is answered without parsing it again."""

    __slots__ = ("answers", "apex", "generation", "qtype", "spec")

    def __init__(self, generation: int, apex: bool, spec: object, qtype: int) -> None:
        self.generation = generation  # the cache's when planned: any change since voids the plan
        self.apex = apex
        self.spec = spec  # zone.RecordSpec when the question draws addresses, else None
        self.qtype = qtype
        self.answers: dict[tuple[int, ...] | None, Hit] = {}  # by the draw's indices (None: no draw)


class PacketCache:
    """Rendered responses by key (`_entries`, the key spelled out in handler.py), and in front of
    them the plans of the exact queries seen (`udp`, `tcp`): one dict lookup on the query's bytes
    after its id instead of checking and keying it again. `clear` voids both."""

    __slots__ = ("_entries", "_planned", "generation", "tcp", "udp")

    def __init__(self) -> None:
        self._entries: dict[object, Cached] = {}
        self.udp: dict[bytes, Plan] = {}
        self.tcp: dict[bytes, Plan] = {}
        self._planned = 0  # responses held by the plans
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def plan(self, plans: dict[bytes, Plan], query: bytes, fresh: Plan) -> Plan:
        """The plan for `query` (bytes after the id) in `plans`, `fresh` if it has none yet."""
        plan = plans.get(query)
        if plan is not None and plan.generation == self.generation:
            return plan
        if len(plans) >= MAX_ENTRIES:
            del plans[next(iter(plans))]
        plans[query] = fresh
        return fresh

    def remember(self, plan: Plan, drawn: tuple[int, ...] | None, hit: Hit) -> None:
        if len(hit.tail) + 2 > MAX_BYTES or plan.generation != self.generation:
            return
        if self._planned >= MAX_ENTRIES:  # as many responses as the cache holds: start over
            self.udp.clear()
            self.tcp.clear()
            self._planned = 0
        plan.answers[drawn] = hit
        self._planned += 1

    def get(self, key: object) -> Cached | None:
        return self._entries.get(key)

    def put(self, key: object, value: Cached) -> None:
        if len(value.wire) > MAX_BYTES:
            return
        entries = self._entries
        if len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]  # dicts keep insertion order: the oldest
        entries[key] = value

    def clear(self) -> None:
        self._entries.clear()
        self.udp.clear()
        self.tcp.clear()
        self._planned = 0
        self.generation += 1


def reply_for(cached: Cached, wire: bytes, name_end: int) -> bytes:
    """The cached response with this query's id and question name (its letter case) copied in."""
    out = cached.wire
    return wire[:2] + out[2:_HEADER] + wire[_HEADER:name_end] + out[name_end:]
