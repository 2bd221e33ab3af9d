"""One DNS packet in, at most one packet out: the whole server minus the sockets.

Theory of operation:
- fewer than 12 bytes, or a packet with QR set (a response, maybe spoofed to start a loop): drop;
- anything dnspython cannot parse: FORMERR, with the id, opcode and RD copied from the header;
- any opcode but QUERY: NOTIMP, also from the header alone; not exactly one question: FORMERR;
  EDNS version above 0: BADVERS (RFC 6891 §6.1.3);
- otherwise the zone decides (zone.py) and dnspython renders, at most `limit` bytes: over UDP the
  requester's EDNS payload size (512 without EDNS; never above what we advertise), over TCP 65535.
  An answer that does not fit goes out empty with TC set, and the client retries over TCP
  (RFC 2181 §9: a partial RRset would be worse than none).
A plain standard query (packet_cache.py) skips dnspython when the response dnspython rendered for
the same question, addresses and serial is in the zone's packet cache; the draw still happens.
A query whose bytes after the id were seen before skips even the header check: its plan (one dict
lookup) says what to redo (the apex's serial refresh, the draw) and holds the finished response
for each draw, into which only the id is copied.
`handle` never raises: an exception from tidegate's own code is counted, logged (a few times) and
answered SERVFAIL, so one bad packet can never stop the server.
"""

from __future__ import annotations

import logging
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from tidegate.dns.candidates import Candidates, Entry
from tidegate.dns.figures import Figures
from tidegate.dns.packet_cache import MAX_BYTES, Cached, Hit, PlainQuery, Plan, plain_query, reply_for
from tidegate.dns.zone import RecordSpec, Zone

log = logging.getLogger("tidegate.dns")

Transport = Literal["udp", "tcp"]
# What we advertise and the most we send over UDP: the DNS flag day 2020 value, which avoids IP
# fragmentation on nearly every path.
OUR_PAYLOAD = 1232
TCP_LIMIT = 65535
_LOGGED_ERRORS_MAX = 10
_HEADER = 12
IN = dns.rdataclass.IN
_TRANSFERS = frozenset((dns.rdatatype.AXFR, dns.rdatatype.IXFR))
_ADDRESS_TYPES = frozenset((dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY))


def handle(wire: bytes, zone: Zone, transport: Transport = "udp") -> bytes | None:
    figs = zone.figures
    packets = zone.packets
    if transport == "udp":
        figs.udp += 1
        plans = packets.udp
    else:
        figs.tcp += 1
        plans = packets.tcp
    try:
        plan = plans.get(wire[2:])
        if plan is not None and plan.generation == packets.generation:
            out = _from_plan(wire, plan, zone, transport, plans)
            if out is not None:
                return out
        else:
            plain = plain_query(wire)
            if plain is not None:
                return _handle_plain(wire, plain, zone, transport, plans)
        return _handle(wire, zone, transport)
    except Exception:
        figs.internal_errors += 1
        if figs.internal_errors <= _LOGGED_ERRORS_MAX:
            log.exception("dns: internal error answering %r", wire[:512])
        try:
            return _bare_reply(wire, dns.rcode.SERVFAIL)
        except Exception:
            return None


def _from_plan(
    wire: bytes, plan: Plan, zone: Zone, transport: Transport, plans: dict[bytes, Plan]
) -> bytes | None:
    """The answer to a query whose bytes after the id were planned: the zone's side effects, the
    draw, and the response kept for that draw. None (rare) when the plan went stale before the
    draw: the caller takes the full path, which draws."""
    if plan.apex:
        zone.refresh()
    spec = plan.spec
    cands: Candidates | None = None
    if spec is not None:
        assert isinstance(spec, RecordSpec)
        cands = zone.candidates(spec.pool)  # a pool change clears the cache: checked next
    if plan.generation != zone.packets.generation:
        plain = plain_query(wire)
        return None if plain is None else _handle_plain(wire, plain, zone, transport, plans)
    drawn: tuple[int, ...] | None = None
    if cands is not None:
        assert isinstance(spec, RecordSpec)
        drawn = zone.draw(spec, cands, plan.qtype)
    hit = plan.answers.get(drawn)
    if hit is None:
        plain = plain_query(wire)
        assert plain is not None  # planned: it was plain then, and these are the same bytes
        picked = None
        if cands is not None and drawn is not None:
            entries = cands.family(plan.qtype)
            picked = tuple([entries[i] for i in drawn])
        return _handle_plain(wire, plain, zone, transport, plans, (drawn, picked))
    figs = zone.figures
    figs.cache_hits += 1
    figs.responses[hit.rcode] += 1
    if hit.truncated:
        figs.truncated += 1
    return wire[:2] + hit.tail


Drawn = tuple[tuple[int, ...] | None, tuple[Entry, ...] | None]


def _handle_plain(
    wire: bytes,
    plain: PlainQuery,
    zone: Zone,
    transport: Transport,
    plans: dict[bytes, Plan],
    drawn: Drawn | None = None,
) -> bytes | None:
    # The zone's side effects first, as Zone.resolve has them: the apex refreshes the serial, an
    # address question draws (and counts) its addresses (unless the caller drew them already).
    spec: RecordSpec | None = None
    apex = False
    if plain.qclass == IN and plain.qtype not in _TRANSFERS:
        apex = plain.name == zone.origin_wire
        if apex and drawn is None:
            zone.refresh()
        spec = zone.records_by_wire.get(plain.name)
        if spec is not None and plain.qtype not in _ADDRESS_TYPES:
            spec = None
        if spec is not None and drawn is None:
            cands = zone.candidates(spec.pool)
            if cands is None:
                drawn = (None, None)
            else:
                indices = zone.draw(spec, cands, plain.qtype)
                entries = cands.family(plain.qtype)
                drawn = (indices, tuple([entries[i] for i in indices]))
    picked = None if drawn is None else drawn[1]
    ips = None if picked is None else tuple([e.ip for e in picked])
    key = (transport, plain.rest, plain.name, ips, zone.serial)
    figs = zone.figures
    packets = zone.packets
    plan = packets.plan(plans, wire[2:], Plan(packets.generation, apex, spec, plain.qtype))
    cached = packets.get(key)
    if cached is not None:
        figs.cache_hits += 1
        figs.responses[cached.rcode] += 1
        if cached.truncated:
            figs.truncated += 1
        reply = reply_for(cached, wire, plain.name_end)
        packets.remember(
            plan, None if drawn is None else drawn[0], Hit(reply[2:], cached.rcode, cached.truncated)
        )
        return reply
    figs.cache_misses += 1
    formerr, errors, responses = figs.formerr, figs.internal_errors, figs.responses.copy()
    out = _handle(wire, zone, transport, picked)
    counted = figs.responses - responses
    if (
        out is not None
        and figs.formerr == formerr
        and figs.internal_errors == errors
        and len(counted) == 1
        and out[_HEADER : plain.name_end].lower() == plain.name
    ):
        (rcode,) = counted
        truncated = bool(out[2] & 0x02)
        packets.put(key, Cached(out, rcode, truncated))
        if len(out) <= MAX_BYTES:
            packets.remember(plan, None if drawn is None else drawn[0], Hit(out[2:], rcode, truncated))
    return out


def _handle(
    wire: bytes, zone: Zone, transport: Transport, picked: tuple[Entry, ...] | None = None
) -> bytes | None:
    figs = zone.figures
    if len(wire) < _HEADER or wire[2] & 0x80:
        figs.dropped += 1
        return None
    if dns.opcode.from_flags(wire[2] << 8) != dns.opcode.QUERY:
        # NOTIFY, UPDATE, ...: we take none of them, whether or not they would parse.
        figs.responses["NOTIMP"] += 1
        return _bare_reply(wire, dns.rcode.NOTIMP)
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        # dnspython's parser raises a DNSException for nearly everything and a ValueError or
        # similar for a few rdata oddities; whatever it is, the packet is malformed.
        figs.formerr += 1
        figs.responses["FORMERR"] += 1
        return _bare_reply(wire, dns.rcode.FORMERR)
    if len(query.question) != 1:
        figs.formerr += 1
        return _render(_reply(query, dns.rcode.FORMERR), query, transport, figs)
    if query.edns > 0:
        return _render(_reply(query, dns.rcode.BADVERS), query, transport, figs)
    q = query.question[0]
    if q.rdtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY):
        figs.formerr += 1
        return _render(_reply(query, dns.rcode.FORMERR), query, transport, figs)
    result = zone.resolve(q.name, q.rdtype, q.rdclass, picked)
    resp = _reply(query, result.rcode)
    if result.authoritative:
        resp.flags |= dns.flags.AA
    resp.answer.extend(result.answer)
    resp.authority.extend(result.authority)
    return _render(resp, query, transport, figs)


def _reply(query: dns.message.Message, rcode: int) -> dns.message.Message:
    resp = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
    resp.set_rcode(dns.rcode.Rcode(rcode))
    return resp


def _render(
    resp: dns.message.Message, query: dns.message.Message, transport: Transport, figs: Figures
) -> bytes:
    if transport == "tcp":
        limit = TCP_LIMIT
    elif query.edns >= 0:
        limit = max(512, min(query.payload, OUR_PAYLOAD))
    else:
        limit = 512
    # dnspython shuffles each RRset as it renders by default: that would undo the weighted order
    # of the draw (the rotation), and make the rendering differ from the key it is cached under.
    try:
        out = resp.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
    except dns.exception.TooBig:
        if not resp.pad:
            raise
        # A padded query (RFC 7830 §4): pad the answer unless that passes the size limit, as
        # dnspython's 468-byte blocks do past 936 bytes of a 1232-byte limit.
        resp.pad = 0
        out = resp.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
    if out[2] & 0x02:  # TC
        figs.truncated += 1
    figs.responses[dns.rcode.to_text(resp.rcode())] += 1
    return out


def _bare_reply(wire: bytes, rcode: int) -> bytes | None:
    """A reply to a packet we could not parse: only its header is trusted, and only partly."""
    if len(wire) < _HEADER or wire[2] & 0x80:
        return None
    msg = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    opcode = dns.opcode.from_flags(int.from_bytes(wire[2:4], "big"))
    msg.flags = dns.flags.QR | (dns.flags.RD if wire[2] & 0x01 else 0)
    msg.set_opcode(opcode)
    msg.set_rcode(dns.rcode.Rcode(rcode))
    return msg.to_wire()
