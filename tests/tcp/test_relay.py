"""The relay through real sockets, the service running in the test's event loop."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct

import pytest

from tidegate.balancing import Instance, State
from tidegate.balancing.scheduler import scheduler_names
from tidegate.config import parse_config
from tidegate.testing.wait import until_async


async def test_relays_both_ways_and_counts(proxy, named_echo, client) -> None:
    echo = await named_echo("a")
    svc = await proxy([echo.address])
    c = await client(svc.address)
    assert await c.line() == "a"
    c.writer.write(b"x" * 100_000)
    assert await c.exactly(100_000) == b"x" * 100_000
    inst = svc.pool.get(echo.address)
    assert inst is not None and inst.counters.active == 1
    c.writer.write_eof()
    assert await c.to_end() == b""
    await svc.wait_idle(5)
    assert (inst.counters.active, inst.counters.completed) == (0, 1)
    assert inst.counters.bytes_in == 100_000
    assert inst.counters.bytes_out == 100_000 + len("a\n")
    figs = svc.describe_pool("p")
    assert figs is not None and figs["accepted"] == 1
    assert figs["instances"] == {echo.address: {"connections_per_second": 0.0, "opened": 1, "drain_cut": 0}}
    assert svc.describe_pool("other") is None


async def test_half_close_client_first(proxy, client) -> None:
    """The client's FIN reaches the instance, which then still answers on the other half."""

    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # to EOF: only the client's FIN, relayed, ends this
        writer.write(b"got %d bytes" % len(data))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(count_then_answer, "127.0.0.1", 0)
    async with server:
        svc = await proxy([f"127.0.0.1:{server.sockets[0].getsockname()[1]}"])
        c = await client(svc.address)
        c.writer.write(b"y" * 300_000)
        c.writer.write_eof()
        assert await c.to_end() == b"got 300000 bytes"


async def test_half_close_instance_first(proxy, client) -> None:
    """The instance's FIN reaches the client, which then still sends on the other half."""
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def greet_close_then_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello, no more from me")
        writer.write_eof()
        data = await reader.read()
        received.set_result(len(data))
        writer.close()

    server = await asyncio.start_server(greet_close_then_read, "127.0.0.1", 0)
    async with server:
        svc = await proxy([f"127.0.0.1:{server.sockets[0].getsockname()[1]}"])
        c = await client(svc.address)
        assert await c.to_end() == b"hello, no more from me"
        for _ in range(16):
            c.writer.write(b"z" * 65536)
            await c.writer.drain()
        c.writer.write_eof()
        assert await asyncio.wait_for(received, 10) == 16 * 65536
        await svc.wait_idle(5)
        assert not svc.connections


async def test_both_fins_seen_still_delivers_what_is_buffered(proxy, client) -> None:
    """Both sides have sent FIN while the proxy still holds client bytes for a slow instance:
    they must all arrive (closing, not aborting, the instance side)."""
    go = asyncio.Event()
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def fin_first_read_later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        await go.wait()
        try:
            received.set_result(len(await reader.read()))
        except ConnectionError:
            received.set_result(-1)
        writer.close()

    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the instance reads slowly
    lsock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(fin_first_read_later, sock=lsock)
    async with server:
        svc = await proxy([f"127.0.0.1:{lsock.getsockname()[1]}"])
        inst = svc.pool.get(f"127.0.0.1:{lsock.getsockname()[1]}")
        assert inst is not None
        c = await client(svc.address)
        assert await c.exactly(3) == b"bye"
        (conn,) = svc.connections
        sent = 0
        # Fill the kernel's buffers until the proxy holds bytes of its own for the instance.
        while conn.upstream.get_write_buffer_size() == 0:
            c.writer.write(b"q" * 65536)
            sent += 65536
            await until_async(lambda n=sent: inst.counters.bytes_in == n)
            assert sent < 64 << 20
        c.writer.write_eof()
        assert await c.to_end() == b""
        await until_async(lambda: conn.client_eof)
        assert conn.upstream.get_write_buffer_size() > 0
        go.set()
        assert await asyncio.wait_for(received, 10) == sent


async def test_idle_timeout_ends_a_closing_connection_whose_peer_reads_nothing(proxy) -> None:
    """Both FINs seen, bytes still held for a client that never reads: the idle timer aborts it
    instead of leaving a close() waiting forever on the buffer."""

    async def answer_then_fin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"z" * (16 << 20))
        writer.write_eof()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(answer_then_fin, "127.0.0.1", 0)
    async with server:
        svc = await proxy([f"127.0.0.1:{server.sockets[0].getsockname()[1]}"], idle_timeout="300ms")
        # A high-water mark above the answer: the proxy reads all of it and the FIN behind it.
        svc.high_water = 64 << 20
        host, _, port = svc.address.rpartition(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.shutdown(socket.SHUT_WR)  # FIN, and never a read
            await until_async(lambda: len(svc.connections) == 1 and next(iter(svc.connections)).closing)
            (conn,) = svc.connections
            assert conn.client.get_write_buffer_size() > 0
            await svc.wait_idle(5)
            assert svc.figures.idle_closed == 1


async def test_refused_connect_is_retried_on_another_instance(proxy, named_echo, client, addresses) -> None:
    dead = addresses.refused()
    live = await named_echo("live")
    svc = await proxy([dead, live.address], connect_tries=3)
    outcomes: list[tuple[str, bool]] = []
    svc.pool.on_result = lambda inst, ok: outcomes.append((inst.address, ok))
    for _ in range(4):
        c = await client(svc.address)
        assert await c.line() == "live"
        c.close()
    dead_inst = svc.pool.get(dead)
    live_inst = svc.pool.get(live.address)
    assert dead_inst is not None and live_inst is not None
    # Round-robin sends every other first attempt to the dead one; each is retried on the live one.
    assert (dead, False) in outcomes and outcomes.count((live.address, True)) == 4
    assert dead_inst.counters.failures == outcomes.count((dead, False)) >= 2
    assert dead_inst.counters.active == 0
    assert live_inst.counters.retries == dead_inst.counters.failures


async def test_connect_timeout_is_retried_on_another_instance(proxy, named_echo, client, addresses) -> None:
    hung = addresses.blackhole()
    live = await named_echo("live")
    svc = await proxy([hung, live.address], connect_timeout="200ms")
    for _ in range(2):  # one of the two starts on the hung instance
        c = await client(svc.address)
        assert await c.line() == "live"
    hung_inst, live_inst = inst_named(svc, hung), inst_named(svc, live.address)
    assert hung_inst.counters.failures == live_inst.counters.retries >= 1
    assert hung_inst.counters.active == 0


async def test_what_the_client_sends_during_the_connect_goes_first(
    proxy, named_echo, client, addresses
) -> None:
    """Bytes and even the FIN sent while the proxy is still connecting (here: waiting out a hung
    instance first) are held, then relayed in order once an instance is adopted."""
    hung = addresses.blackhole()
    live = await named_echo("live")
    svc = await proxy([hung, live.address], connect_timeout="200ms")
    c = await client(svc.address)
    c.writer.write(b"early bytes")
    c.writer.write_eof()
    assert await c.to_end() == b"live\nearly bytes"
    assert inst_named(svc, hung).counters.failures == 1


async def test_no_instance_connects_closes_the_client(proxy, client, addresses) -> None:
    svc = await proxy([addresses.refused(), addresses.refused()], connect_tries=5)
    c = await client(svc.address)
    assert await c.to_end() == b""
    await svc.wait_idle(5)
    assert svc.figures.unplaced == 1
    assert sum(i.counters.failures for i in svc.pool) == 2  # each instance tried once, no more
    assert all(i.counters.active == 0 for i in svc.pool)


async def test_connect_tries_bound_the_attempts(proxy, client, addresses) -> None:
    svc = await proxy([addresses.refused() for _ in range(4)], connect_tries=2)
    c = await client(svc.address)
    assert await c.to_end() == b""
    assert sum(i.counters.failures for i in svc.pool) == 2


async def test_idle_connection_is_closed(proxy, named_echo, client) -> None:
    echo = await named_echo("a")
    svc = await proxy([echo.address], idle_timeout="300ms")
    loop = asyncio.get_running_loop()
    c = await client(svc.address)
    started = loop.time()
    assert await c.line() == "a"
    assert await c.to_end() == b""
    assert loop.time() - started >= 0.25
    assert svc.figures.idle_closed == 1


async def test_traffic_keeps_a_connection_from_idling_out(proxy, named_echo, client) -> None:
    echo = await named_echo("a")
    svc = await proxy([echo.address], idle_timeout="400ms")
    loop = asyncio.get_running_loop()
    c = await client(svc.address)
    assert await c.line() == "a"
    started = loop.time()
    while loop.time() - started < 1.2:  # three idle periods, with traffic every 100 ms
        c.writer.write(b"ping")
        assert await c.exactly(4) == b"ping"
        await asyncio.sleep(0.1)  # the traffic pattern under test, not a synchronisation
    assert svc.figures.idle_closed == 0


def inst_named(svc, address: str) -> Instance:
    inst = svc.pool.get(address)
    assert inst is not None
    return inst


async def test_drain_keeps_open_connections_sends_new_ones_elsewhere_then_cuts(
    proxy, named_echo, client
) -> None:
    a, b = await named_echo("a"), await named_echo("b")
    svc = await proxy([a.address, b.address], drain_grace="1s")
    first, second = await client(svc.address), await client(svc.address)
    on = {await first.line(): first, await second.line(): second}
    assert set(on) == {"a", "b"}
    inst_a = inst_named(svc, a.address)
    loop = asyncio.get_running_loop()
    svc.pool.set_state(inst_a, State.DRAINING, "test")
    drained_at = loop.time()
    for _ in range(4):
        c = await client(svc.address)
        assert await c.line() == "b"
    # The open connection to the draining instance still relays.
    on["a"].writer.write(b"still here")
    assert await on["a"].exactly(10) == b"still here"
    # ... until the grace expires: then it is cut, and counted; the one on b is untouched.
    assert await on["a"].to_end() == b""
    assert loop.time() - drained_at >= 0.9  # not before the grace
    assert svc.figures.of(a.address).drain_cut == 1 and svc.figures.drain_cut == 1
    on["b"].writer.write(b"ok")
    assert await on["b"].exactly(2) == b"ok"
    assert inst_a.counters.active == 0


async def test_enabling_again_within_the_grace_cancels_the_cut(proxy, named_echo, client) -> None:
    a = await named_echo("a")
    svc = await proxy([a.address], drain_grace="300ms", idle_timeout="5s")
    c = await client(svc.address)
    assert await c.line() == "a"
    inst = inst_named(svc, a.address)
    svc.pool.set_state(inst, State.DRAINING, "test")
    cut_in = svc.cut_in(inst)
    assert cut_in is not None and 0 < cut_in <= 0.31  # uvloop's clock ticks in milliseconds
    (shown,) = svc.describe_pool("p")["drain_cut_in"].values()
    assert shown == pytest.approx(cut_in, abs=0.01)
    svc.pool.set_state(inst, State.UP, "test")
    assert svc.cut_in(inst) is None
    c.writer.write(b"alive")
    assert await c.exactly(5) == b"alive"
    assert svc.figures.drain_cut == 0


async def test_slow_reader_pauses_the_sender(proxy, client) -> None:
    """Flow control: an instance that does not read makes the proxy stop reading the client, so
    the proxy holds about its high-water mark, not what the client pushes."""
    reading = asyncio.Event()
    got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        n = 0
        while data := await reader.read(1 << 20):
            n += len(data)
        got.set_result(n)
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0, limit=1 << 20)
    async with server:
        svc = await proxy([f"127.0.0.1:{server.sockets[0].getsockname()[1]}"])
        c = await client(svc.address)
        total = 64 << 20
        c.writer.write(b"q" * total)  # held by the client's transport; the kernel takes what it can
        c.writer.write_eof()
        await until_async(lambda: len(svc.connections) == 1)
        (conn,) = svc.connections
        inst = inst_named(svc, svc.pool.eligible()[0].address)
        await until_async(lambda: inst.counters.bytes_in > 0 and not conn.client.is_reading())
        held = conn.upstream.get_write_buffer_size()
        assert 0 < held <= svc.high_water + (1 << 20)
        assert inst.counters.bytes_in < total // 4  # the rest waits in the client and the kernel
        reading.set()
        assert await asyncio.wait_for(got, 20) == total
        assert await c.to_end() == b""


async def test_stop_closes_the_listener_and_waits_for_connections(proxy, named_echo, client) -> None:
    a = await named_echo("a")
    svc = await proxy([a.address])
    c = await client(svc.address)
    assert await c.line() == "a"
    stopping = asyncio.ensure_future(svc.stop(10))
    await asyncio.sleep(0)
    host, _, port = svc.address.rpartition(":")
    try:
        _, w = await asyncio.open_connection(host, int(port))
    except ConnectionRefusedError:
        pass
    else:
        w.close()
        raise AssertionError("listener still accepts after stop()")
    c.writer.write(b"more")
    assert await c.exactly(4) == b"more"
    assert not stopping.done()
    c.writer.write_eof()
    await asyncio.wait_for(stopping, 5)


async def test_stop_cuts_what_outlives_the_grace(proxy, named_echo, client) -> None:
    a = await named_echo("a")
    svc = await proxy([a.address])
    c = await client(svc.address)
    assert await c.line() == "a"
    await asyncio.wait_for(svc.stop(0.2), 5)
    assert await c.to_end() == b""
    assert not svc.connections


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_listener_and_instance(harness, client) -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def first_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.readline())
        writer.write(b"hi over v6")
        writer.close()

    server = await asyncio.start_server(first_line, "::1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        text = harness.config_text([f"[::1]:{port}"], proxy_protocol="v1").replace(
            '"127.0.0.1:0"', '"[::1]:0"'
        )
        _, (svc,) = await harness.start(parse_config(text))
        assert svc.address.startswith("[::1]:")
        c = await client(svc.address)
        c.writer.write(b"x\n")
        assert await c.to_end() == b"hi over v6"
        client_port = c.writer.get_extra_info("sockname")[1]
        listen_port = svc.address.rpartition(":")[2]
        assert await got == f"PROXY TCP6 ::1 ::1 {client_port} {listen_port}\r\n".encode()


@pytest.mark.parametrize("scheduler", ["source-hash", "maglev", "consistent-hash"])
async def test_hashing_schedulers_give_each_client_address_its_instance(
    scheduler: str, harness, named_echo
) -> None:
    if scheduler not in scheduler_names():
        pytest.skip(f"{scheduler} is not built yet")
    echoes = [await named_echo(n) for n in "abc"]
    text = harness.config_text([e.address for e in echoes], scheduler=scheduler)
    _, (svc,) = await harness.start(parse_config(text))
    host, _, port = svc.address.rpartition(":")
    seen: dict[str, set[str]] = {}
    for last in range(2, 18):  # 16 client addresses on the loopback network
        source = f"127.0.0.{last}"
        for _ in range(3):
            r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port), local_addr=(source, 0)), 5)
            seen.setdefault(source, set()).add((await asyncio.wait_for(r.readline(), 5)).decode().strip())
            w.close()
    assert all(len(names) == 1 for names in seen.values()), seen  # affinity: one instance each
    assert len(set().union(*seen.values())) >= 2  # and the addresses spread over the pool


async def test_slow_client_pauses_the_instance_and_gets_every_byte(proxy) -> None:
    """Flow control the other way, over a large transfer: a client that reads nothing makes the
    proxy stop reading the instance (it holds about its high-water mark), and when the client
    reads, every byte arrives, in order."""
    total = 48 << 20
    block = bytes(range(256)) * 4096  # 1 MiB, a pattern that shows a lost or repeated chunk
    sent = hashlib.sha256()
    for _ in range(total // len(block)):
        sent.update(block)

    async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(bulk, "127.0.0.1", 0)
    async with server:
        svc = await proxy([f"127.0.0.1:{server.sockets[0].getsockname()[1]}"])
        inst = svc.pool.eligible()[0]
        host, _, port = svc.address.rpartition(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        try:
            await until_async(lambda: len(svc.connections) == 1)
            (conn,) = svc.connections
            await until_async(lambda: inst.counters.bytes_out > 0 and not conn.upstream.is_reading())
            assert 0 < conn.client.get_write_buffer_size() <= svc.high_water + (1 << 20)
            assert inst.counters.bytes_out < total // 4  # the rest waits in the instance and the kernel
            got = hashlib.sha256()
            n = 0
            while data := await asyncio.wait_for(reader.read(1 << 20), 10):
                got.update(data)
                n += len(data)
            assert n == total and got.digest() == sent.digest()
        finally:
            writer.close()


async def test_a_large_request_during_the_connect_is_held_paused_then_relayed(
    proxy, client, addresses
) -> None:
    """What the client sends while no instance is adopted yet is held; past the high-water mark
    the proxy stops reading it, and once an instance is adopted all of it goes, in order."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def take_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_server(take_all, "127.0.0.1", 0)
    async with server:
        hung = addresses.blackhole()
        svc = await proxy([hung, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"], connect_timeout="500ms")
        c = await client(svc.address)
        payload = b"".join(b"%08d" % i for i in range(1 << 18))  # 2 MiB, each offset written out
        c.writer.write(payload)
        c.writer.write_eof()
        await until_async(lambda: len(svc.connections) == 1)
        (conn,) = svc.connections
        await until_async(lambda: conn.client_paused or conn.counters is not None)
        if conn.counters is None:  # still connecting: held, at most a chunk past the mark
            assert svc.high_water < conn.pending_bytes <= svc.high_water + (1 << 20)
        assert await asyncio.wait_for(received, 10) == payload


async def test_the_idle_timeout_does_not_cut_a_connect_under_way(
    proxy, named_echo, client, addresses
) -> None:
    """The idle timeout counts from adoption: a connect that waits out a hung instance for longer
    than the idle timeout still ends on the live one."""
    hung = addresses.blackhole()
    live = await named_echo("live")
    svc = await proxy([hung, live.address], connect_timeout="600ms", idle_timeout="200ms")
    for _ in range(2):  # one of the two starts on the hung instance
        c = await client(svc.address)
        assert await c.line() == "live"
        c.close()
        await svc.wait_idle(5)
    assert inst_named(svc, hung).counters.failures >= 1
    assert svc.figures.idle_closed == 0


async def test_a_client_leaving_during_the_connect_ends_the_attempt(proxy, addresses) -> None:
    """A client that resets while the proxy connects: the attempt under way is abandoned at once
    (not left to its timeout), not counted as the instance's failure, and its instance's active
    count is back to zero. (A FIN is no leaving: it is held and passed on, see above.)"""
    hung = addresses.blackhole()
    svc = await proxy([hung], connect_timeout="30s")
    inst = inst_named(svc, hung)
    host, _, port = svc.address.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    await until_async(lambda: inst.counters.active == 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    await svc.wait_idle(5)
    await until_async(lambda: inst.counters.active == 0)
    assert inst.counters.failures == 0 and svc.figures.unplaced == 0
