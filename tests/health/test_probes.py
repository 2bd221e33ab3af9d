import asyncio
import socket
import time

from tidegate.health.probes import probe_http, probe_tcp


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_http_expected_status_passes_other_fails(backends) -> None:
    b = await backends.new()
    r = await probe_http("127.0.0.1", b.port, "/healthz", 200, 1.0)
    assert r.ok and "200" in r.detail
    b.status = 503
    r = await probe_http("127.0.0.1", b.port, "/healthz", 200, 1.0)
    assert not r.ok and r.detail == "http status 503, expected 200"
    assert (await probe_http("127.0.0.1", b.port, "/healthz", 503, 1.0)).ok


async def test_refused_fails_at_once() -> None:
    port = closed_port()
    for r in (
        await probe_http("127.0.0.1", port, "/", 200, 1.0),
        await probe_tcp("127.0.0.1", port, 1.0),
    ):
        assert not r.ok and "refused" in r.detail.lower()


async def test_silent_server_times_out_within_the_timeout() -> None:
    # Accepts and never answers.
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    r = await probe_http("127.0.0.1", port, "/", 200, 0.2)
    elapsed = time.monotonic() - t0
    server.close()
    for w in held:
        w.close()
    await server.wait_closed()
    assert not r.ok and "timeout" in r.detail
    assert 0.2 <= elapsed < 1.0


async def test_garbage_and_early_close_fail() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    async def hangup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for handler, words in ((garbage, ("bad response",)), (hangup, ("closed", "reset"))):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r = await probe_http("127.0.0.1", port, "/", 200, 1.0)
        server.close()
        await server.wait_closed()
        assert not r.ok and any(w in r.detail for w in words), r


async def test_tcp_connect_passes(backends) -> None:
    b = await backends.new()
    assert (await probe_tcp("127.0.0.1", b.port, 1.0)).ok
