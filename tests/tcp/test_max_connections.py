"""[[tcp]] max_connections: at the limit the listener pauses and the kernel's backlog holds new
clients, which are served as soon as a connection closes (never refused, never reset)."""

from __future__ import annotations

import asyncio

import pytest

from tidegate.testing.wait import until_async


async def test_a_client_beyond_max_connections_waits_then_is_served(proxy, named_echo, client) -> None:
    echo = await named_echo("a")
    svc = await proxy([echo.address], max_connections=2)
    first = await client(svc.address)
    assert await first.line() == "a"
    second = await client(svc.address)
    assert await second.line() == "a"
    third = await client(svc.address)  # connected: the kernel's backlog took it
    with pytest.raises(TimeoutError):
        # Not accepted, so not relayed: nothing comes (a refusal or reset would raise at once, a
        # close would return b"").
        await asyncio.wait_for(third.reader.readline(), 0.5)
    assert svc.open_count() == 2
    assert svc.gate is not None and svc.gate.figures.pauses["max_connections"] == 1
    first.close()
    assert await third.line() == "a"  # accepted once the first closed, and relayed
    third.writer.write(b"still here\n")
    assert await third.line() == "still here"
    await until_async(lambda: svc.open_count() == 2)


async def test_max_connections_default_leaves_two_descriptors_a_client(proxy, named_echo) -> None:
    """Without the key, the share of the open-file limit fdlimit.py gives each listener."""
    from tidegate.fdlimit import default_max_connections, open_files

    echo = await named_echo("a")
    svc = await proxy([echo.address])
    assert svc.max_connections == default_max_connections(open_files(), 1)
    assert svc.gate is not None and svc.gate.max_connections == svc.max_connections
