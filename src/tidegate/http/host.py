"""Whether a Host field value is what RFC 9110 §7.2 allows: `uri-host [ ":" port ]`, the host
being RFC 3986's reg-name, IPv4 address or IP-literal (pure; both lanes call it).

Anything else — userinfo (`user@host`), whitespace inside, a character outside the grammar, a
port that is not digits — gets a 400 and is never forwarded: an instance or a cache behind the
gateway must not see a Host it could read two ways.
"""

from __future__ import annotations

import ipaddress
from typing import Final

# unreserved / sub-delims / "%" (checked as pct-encoded below), as a 256-entry table.
_REG_NAME: Final = bytes(
    1 if (chr(c).isascii() and (chr(c).isalnum() or chr(c) in "-._~!$&'()*+,;=%")) else 0 for c in range(256)
)
_HEX: Final = b"0123456789abcdefABCDEF"
_IS_HEX: Final = bytes(1 if c in _HEX else 0 for c in range(256))
_MAX_PORT_DIGITS: Final = 5


def _ip_literal(inner: bytes) -> bool:
    if inner[:1] in (b"v", b"V"):  # IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        version, dot, rest = inner[1:].partition(b".")
        return (
            bool(version)
            and all(c in _HEX for c in version)
            and bool(dot)
            and bool(rest)
            and all((_REG_NAME[c] and c != 37) or c == 58 for c in rest)
        )
    try:
        ipaddress.IPv6Address(inner.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def valid_host(value: bytes) -> bool:
    """True when `value` (without surrounding whitespace) is a Host field value to forward.

    One pass over the bytes, no bytes methods: it runs for every request, on the fast lane too.
    """
    n = len(value)
    if n and value[0] == 91:  # "["
        return _bracketed(value)
    table = _REG_NAME
    i = 0
    while i < n:
        c = value[i]
        if c == 58:  # ":" then the port: up to 5 digits
            j = i + 1
            if n - j > _MAX_PORT_DIGITS:
                return False
            while j < n:
                d = value[j]
                if d < 48 or d > 57:
                    return False
                j += 1
            return True
        if not table[c]:
            return False
        if c == 37:  # "%" HEXDIG HEXDIG
            if i + 2 >= n or not _IS_HEX[value[i + 1]] or not _IS_HEX[value[i + 2]]:
                return False
            i += 2
        i += 1
    return True


def _bracketed(value: bytes) -> bool:
    end = value.find(b"]")
    if end < 0 or not _ip_literal(value[1:end]):
        return False
    rest = value[end + 1 :]
    if not rest:
        return True
    port = rest[1:]
    return rest[:1] == b":" and len(port) <= _MAX_PORT_DIGITS and (not port or port.isdigit())
