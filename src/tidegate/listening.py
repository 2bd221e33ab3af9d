"""Listening sockets bound apart from the services that serve them.

A reload binds the listeners of its new sections before it changes anything, so a config whose
new listener cannot bind is refused whole (nginx and HAProxy reloads behave the same way); the
services then serve the sockets they are handed. Binding at start goes through the same code.
"""

from __future__ import annotations

import socket

from tidegate.config.model import split_address


def stream_listener(address: str, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A non-blocking TCP socket listening on `address` (port 0: a free one)."""
    host, port = split_address(address)
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def shown(sock: socket.socket) -> str:
    """HOST:PORT of a bound socket, IPv6 hosts in brackets."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
