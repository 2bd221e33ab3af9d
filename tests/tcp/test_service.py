"""The service around the relay: listener names, metrics registration, reload."""

from __future__ import annotations

from prometheus_client import generate_latest

from tidegate.config import parse_config
from tidegate.control.runtime.pools import reload_pools


async def test_listeners_are_named_in_order_and_share_one_collector(harness, named_echo, client) -> None:
    echo = await named_echo("a")
    rt, services = await harness.start(parse_config(harness.config_text([echo.address], listeners=3)))
    assert [s.name for s in services] == ["tcp", "tcp.1", "tcp.2"]
    for svc in services:
        c = await client(svc.address)
        assert await c.line() == "a"
        c.close()
    for svc in services:
        await svc.wait_idle(5)
    text = generate_latest(rt.metrics).decode()
    for name in ("tcp", "tcp.1", "tcp.2"):
        assert f'tidegate_tcp_accepted_connections_total{{listener="{name}"}} 1.0' in text
        assert (
            f'tidegate_tcp_instance_opened_connections_total{{instance="{echo.address}",listener="{name}",pool="p"}} 1.0'
            in text
        )


async def test_reload_moves_to_the_new_pool_and_listen_address(harness, named_echo, client) -> None:
    a, b = await named_echo("a"), await named_echo("b")
    rt, (svc,) = await harness.start(parse_config(harness.config_text([a.address])))
    old_address = svc.address
    kept = await client(old_address)
    assert await kept.line() == "a"
    # Same pool name, other instance; a new listen port; a shorter idle timeout.
    text = harness.config_text([b.address], idle_timeout="42s").replace('"127.0.0.1:0"', '"127.0.0.2:0"')
    new_cfg = parse_config(text)
    rt.pools = reload_pools(rt.pools, new_cfg)
    rt.config = new_cfg
    await svc.reload(new_cfg, rt.pools)
    assert svc.address.startswith("127.0.0.2:") and svc.idle_timeout == 42
    c = await client(svc.address)
    assert await c.line() == "b"
    # The connection accepted before the reload keeps running on its instance.
    kept.writer.write(b"old")
    assert await kept.exactly(3) == b"old"
    # The old listener is closed.
    try:
        stale = await client(old_address)
    except OSError:
        pass
    else:
        assert await stale.to_end() == b"", "the old listen address still accepts"
