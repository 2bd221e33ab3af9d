"""Which instance a new connection tries next, and the hash key that gives it affinity.

Theory of operation: a connection attempt that failed (refused, unreachable, timed out) sent
nothing to the instance, so trying another one is always safe, whatever the protocol on top.
Each try goes to an instance not tried yet (`pool.pick(key, avoid=tried)`); the scheduler answers
with an already-tried one only when none is left, which ends the attempts, as does the try limit.
For hashing schedulers the key is the client's IP address, so one client keeps landing on one
instance while the pool is unchanged (nginx `hash $remote_addr`, HAProxy `balance source`).
"""

from __future__ import annotations

import socket
from collections.abc import Collection

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool

# The schedulers that use the key (as http/routing.py's HASHING_SCHEDULERS); for the others the
# client's address is not looked at.
HASHING_SCHEDULERS = frozenset({"consistent-hash", "maglev", "mh", "source-hash", "sh"})


def uses_key(pool: Pool) -> bool:
    return pool.scheduler_name in HASHING_SCHEDULERS


def client_key(peername: object) -> bytes | None:
    """The packed client IP (4 or 16 bytes; IPv4-mapped IPv6 unmapped), None when there is none.

    inet_pton rather than the ipaddress module: this runs once per connection, and costs a tenth.
    """
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None
    host = peername[0]
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return None
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


_V4_MAPPED = bytes(10) + b"\xff\xff"


def next_instance(
    pool: Pool, key: bytes | None, tried: Collection[Instance], max_tries: int
) -> Instance | None:
    """The instance for the next attempt, or None when the attempts are over."""
    if len(tried) >= max_tries:
        return None
    inst = pool.pick(key, avoid=tried)
    if inst is None or inst in tried:
        return None
    return inst
