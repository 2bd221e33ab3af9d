"""Random and mutated DNS packets, reproducible from a seed, for the handler's fuzz tests."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import dns.edns
import dns.message
import dns.rdatatype

NAMES = ["www.example.test.", "one.example.test.", "example.test.", "nope.example.test.", "x.org.", "."]
TYPES = ["A", "AAAA", "ANY", "SOA", "NS", "MX", "TXT", "AXFR", "OPT", "TYPE65280"]


def _build_query(rng: random.Random) -> bytes:
    q = dns.message.make_query(rng.choice(NAMES), rng.choice(TYPES[:7]), id=0)
    if rng.random() < 0.5:
        opts = []
        if rng.random() < 0.3:
            opts.append(dns.edns.ECSOption("192.0.2.0", 24))
        if rng.random() < 0.3:
            opts.append(dns.edns.GenericOption(10, rng.randbytes(8)))  # a cookie
        q.use_edns(0, payload=rng.choice([0, 100, 512, 1232, 4096, 65535]), options=opts)
    return q.to_wire()


def _build_odd_query(rng: random.Random) -> bytes:
    q = dns.message.make_query(rng.choice(NAMES), rng.choice(TYPES), id=0)
    if rng.random() < 0.5:
        q.use_edns(rng.choice([0, 0, 1]), payload=rng.choice([0, 512, 1232, 4096]))
    q.flags = rng.randrange(65536) & 0x07B0 if rng.random() < 0.2 else q.flags
    return q.to_wire()


# Rendering a query with dnspython costs more than answering it: render a few hundred once.
_seed = random.Random(0)
_QUERIES = [_build_query(_seed) for _ in range(400)]
_ODD_QUERIES = [_build_odd_query(_seed) for _ in range(400)]


def _with_id(rng: random.Random, wire: bytes) -> bytes:
    return rng.randbytes(2) + wire[2:]


def valid_query(rng: random.Random) -> bytes:
    return _with_id(rng, rng.choice(_QUERIES))


def _header(qd: int, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100, qid: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def _crafted(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    tail = struct.pack("!HH", 1, 1)
    if kind == 0:  # a label longer than what is left
        return _header(1) + bytes([rng.randrange(20, 64)]) + b"abc"
    if kind == 1:  # label types 01 and 10 (extended / reserved)
        return _header(1) + bytes([rng.randrange(0x40, 0xC0)]) + b"abc\x00" + tail
    if kind == 2:  # compression pointer to itself
        return _header(1) + b"\xc0\x0c" + tail
    if kind == 3:  # two pointers pointing at each other
        return _header(1) + b"\xc0\x0e\xc0\x0c" + tail
    if kind == 4:  # a pointer past the end / into the header
        return _header(1) + bytes([0xC0 | rng.randrange(64), rng.randrange(256)]) + tail
    if kind == 5:  # huge counts on a short packet
        base = valid_query(rng)
        counts = [rng.choice([0, 1, 2, 0xFFFF, rng.randrange(65536)]) for _ in range(4)]
        return base[:4] + struct.pack("!HHHH", *counts) + base[12:]
    if kind == 6:  # a name longer than 255 bytes
        labels = b"".join(b"\x3f" + b"a" * 63 for _ in range(5))
        return _header(1) + labels + b"\x00" + tail
    if kind == 7:  # OPT with an option length past the end, or two OPTs
        q = dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire()
        if rng.random() < 0.5:
            return q[:-2] + b"\x00\x08\x00\x0a\x00\xff\x01\x02"
        opt = q[-11:]
        return q[:10] + b"\x00\x02" + q[12:] + opt
    # a TSIG record with garbage, or a query sent as a response
    q = bytearray(valid_query(rng))
    if rng.random() < 0.5:
        q[2] |= 0x80
        return bytes(q)
    q[11] += 1
    return bytes(q) + b"\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x04" + rng.randbytes(4)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and b:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if kind == 1 and b:  # flip bits
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2 and b:  # overwrite bytes
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 3:  # insert bytes
        i = rng.randrange(len(b) + 1)
        return bytes(b[:i] + rng.randbytes(rng.randrange(1, 8)) + b[i:])
    i = rng.randrange(len(b) + 1)  # delete a run
    return bytes(b[:i] + b[i + rng.randrange(1, 8) :])


def packets(seed: int, n: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(n):
        r = rng.random()
        if r < 0.10:
            # Well-formed queries of every kind, odd types included: the answering path.
            yield _with_id(rng, rng.choice(_ODD_QUERIES))
        elif r < 0.20:
            yield rng.randbytes(rng.randrange(0, 600))
        elif r < 0.35:
            yield _crafted(rng)
        elif r < 0.45:
            # A random header then valid-looking question bytes: gets past the first checks.
            flags = rng.randrange(65536) & (0x7FFF if rng.random() < 0.3 else 0x07FF)
            yield _header(rng.randrange(4), flags=flags) + valid_query(rng)[12:]
        else:
            data = valid_query(rng) if rng.random() < 0.7 else _crafted(rng)
            for _ in range(rng.randrange(1, 4)):
                data = _mutate(rng, data)
            yield data
