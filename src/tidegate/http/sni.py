"""Which certificate answers a TLS client hello's server name (pure; http/tls.py calls it).

Names follow RFC 6125: compared case-insensitively without a trailing dot; a wildcard is a whole
leftmost label `*` standing for exactly one label (`*.example.com` matches `a.example.com`, not
`example.com` nor `a.b.example.com`), and never matches an IP address. As nginx does, an exact name
beats a wildcard whatever the certificates' order; among equals the first listed wins; no match,
or no server name at all, gets the first certificate.

`pick` says it in the plainest way; `NameIndex` answers the same with two dict lookups per
handshake (tests/http/test_sni.py holds them equal).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence


def normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def wildcard_matches(pattern: str, host: str) -> bool:
    """`*.rest` against host: the first label of host stands for the star (a non-empty label)."""
    pattern, host = normal(pattern), normal(host)
    if not pattern.startswith("*.") or is_address(host):
        return False
    first, dot, rest = host.partition(".")
    return bool(first) and bool(dot) and rest == pattern[2:] and "*" not in pattern[2:]


def pick(names: Sequence[Sequence[str]], server_name: str | None) -> int:
    """The index of the certificate (given by the names each one holds) for `server_name`."""
    if not server_name or not names:
        return 0
    host = normal(server_name)
    for i, cert_names in enumerate(names):
        if any(normal(n) == host for n in cert_names if not n.startswith("*.")):
            return i
    for i, cert_names in enumerate(names):
        if any(wildcard_matches(n, host) for n in cert_names if n.startswith("*.")):
            return i
    return 0


class NameIndex:
    """`pick` for one fixed list of certificates, made once per certificate set."""

    __slots__ = ("exact", "wild")

    def __init__(self, names: Sequence[Sequence[str]]) -> None:
        self.exact: dict[str, int] = {}
        self.wild: dict[str, int] = {}  # "example.com" for "*.example.com"
        for i, cert_names in enumerate(names):
            for name in cert_names:
                n = normal(name)
                if name.startswith("*."):
                    if "*" not in n[2:]:
                        self.wild.setdefault(n[2:], i)
                else:
                    self.exact.setdefault(n, i)

    def pick(self, server_name: str | None) -> int:
        if not server_name:
            return 0
        host = normal(server_name)
        i = self.exact.get(host)
        if i is not None:
            return i
        first, dot, rest = host.partition(".")
        if first and dot and not is_address(host):
            return self.wild.get(rest, 0)
        return 0
