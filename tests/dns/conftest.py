"""Fixtures for the DNS layer's tests: a DNS service on a real socket in its own thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tidegate.testing.dns_server import DnsServer


@pytest.fixture
def dns_server() -> Iterator[Callable[[str], DnsServer]]:
    servers: list[DnsServer] = []

    def start(config_text: str) -> DnsServer:
        s = DnsServer(config_text)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
