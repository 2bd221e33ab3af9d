"""Request ids (`X-Request-Id` by default; `request_id_header` per [[http]] listener).

A client's id is kept when it is sane — 1 to MAX_LENGTH visible ASCII bytes (0x21-0x7E), what
nginx's `$request_id` and HAProxy's `unique-id-format` ids are made of — and replaced otherwise,
so an id that could split a log line or a header never reaches an instance or the access log.

A made id is 32 lowercase hex digits, as nginx's `$request_id`: 30 drawn at random (120 bits,
one os.urandom call per BLOCK ids) and 2 counting the ids made from that draw. Unique across
worker processes and restarts but by a chance of about (n/256)²/2¹²¹ for n ids; a forked child
throws its parent's draw away, so no two processes count on from the same one. Per request it
is one concatenation: no system call, no number formatting.

Pure but for the process-wide draw and its count.
"""

from __future__ import annotations

import os
from typing import Final

MAX_LENGTH: Final = 200
_VISIBLE: Final = bytes(range(0x21, 0x7F))
BLOCK: Final = 256  # ids made from one draw
_SUFFIXES: Final = tuple(b"%02x" % k for k in range(BLOCK))


class _Maker:
    # An instance, not class attributes: compiled, its fields are a C struct's.
    def __init__(self) -> None:
        self.prefix = b""
        self.at = BLOCK

    def forget(self) -> None:
        self.at = BLOCK


_MAKER: Final = _Maker()
os.register_at_fork(after_in_child=_MAKER.forget)


def new_id() -> bytes:
    """A fresh id: 32 hex digits (see the module docstring)."""
    m = _MAKER
    at = m.at
    if at >= BLOCK:
        m.prefix = os.urandom(15).hex().encode()
        at = 0
    m.at = at + 1
    return m.prefix + _SUFFIXES[at]


def sane(value: bytes) -> bool:
    """Whether a client's id may be kept: 1 to MAX_LENGTH visible ASCII bytes."""
    return 0 < len(value) <= MAX_LENGTH and not value.translate(None, _VISIBLE)


def take(names: list[bytes], values: list[bytes], name: bytes) -> bytes:
    """The request's id from a header list (lowercase `names`, as HTTP/2 has them), which is
    left holding it exactly once, last: the client's first value when sane, else a new one."""
    rid = b""
    k = 0
    while k < len(names):
        if names[k] == name:
            value = values[k]
            if not rid and sane(value):
                rid = value
            del names[k]
            del values[k]
        else:
            k += 1
    if not rid:
        rid = new_id()
    names.append(name)
    values.append(rid)
    return rid
