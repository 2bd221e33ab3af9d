"""Stable hashes for the hashing schedulers.

Two processes (two gateways, two LVS directors, a restart) must send the same key to the same
instance, so nothing here may depend on Python's per-process `hash()` randomisation. BLAKE2b is
in the standard library, keyed by a personalisation string so the independent hashes Maglev
needs are really independent, and fast enough for one call per request (~0.3 µs).
"""

from __future__ import annotations

from hashlib import blake2b


def key_hash(key: bytes) -> int:
    """A 64-bit hash of a request's key (client address, URI, header or cookie value)."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "little")


def name_hash(name: str, salt: bytes = b"") -> int:
    """A 64-bit hash of an instance's address; different salts give independent hashes."""
    return int.from_bytes(blake2b(name.encode(), digest_size=8, person=salt).digest(), "little")


def name_points(name: str, count: int) -> list[int]:
    """`count` 64-bit ring points for one instance, four from each 32-byte digest (as ketama
    takes four points from each MD5). Point k of a name never depends on `count`, so a weight
    change only adds or removes points and keys elsewhere on the ring stay where they were."""
    points: list[int] = []
    raw = name.encode()
    for block in range((count + 3) // 4):
        digest = blake2b(raw + b"#%d" % block, digest_size=32).digest()
        for j in range(4):
            if len(points) == count:
                break
            points.append(int.from_bytes(digest[8 * j : 8 * j + 8], "little"))
    return points
