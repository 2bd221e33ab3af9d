"""`tidegate run` with a [[tcp]] listener, as a separate process, through real sockets."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tidegate.testing.process import Proc
from tidegate.testing.tcp_peers import BulkEnd, ThreadedNamedEcho

GIB = 1 << 30


def vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_config(instances: list[str], **extra: str) -> str:
    insts = ", ".join(f'{{ address = "{a}" }}' for a in instances)
    text = f'[[pools]]\nname = "p"\ninstances = [{insts}]\n[[tcp]]\nlisten = "127.0.0.1:0"\npool = "p"\n'
    return text + "".join(f'{k} = "{v}"\n' for k, v in extra.items())


def test_a_gib_each_way_byte_identical_in_bounded_memory(start_tidegate) -> None:
    lsock = socket.create_server(("127.0.0.1", 0))
    accepted: list[BulkEnd] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        accepted.append(BulkEnd(conn, GIB, seed=2).start())

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    proc = start_tidegate(tcp_config([f"127.0.0.1:{lsock.getsockname()[1]}"]))
    baseline = vm_hwm_bytes(proc.popen.pid)
    cpu_before = cpu_seconds(proc.popen.pid)
    started = time.monotonic()
    client = BulkEnd(socket.create_connection(proc.address("tcp"), timeout=60), GIB, seed=1).start()
    acceptor.join(10)
    (server,) = accepted
    client.join(100)
    server.join(100)
    elapsed = time.monotonic() - started
    hwm = vm_hwm_bytes(proc.popen.pid)
    cpu = cpu_seconds(proc.popen.pid) - cpu_before
    lsock.close()
    print(
        f"\n1 GiB each way in {elapsed:.1f}s ({2 * GIB / elapsed / 1e6:.0f} MB/s both ways together); "
        f"proxy CPU {cpu:.1f}s, VmHWM {hwm / 1e6:.1f} MB (before the transfer {baseline / 1e6:.1f} MB)"
    )
    assert (client.sent.nbytes, client.received.nbytes) == (GIB, GIB)
    assert (server.sent.nbytes, server.received.nbytes) == (GIB, GIB)
    assert client.sent.digest == server.received.digest
    assert server.sent.digest == client.received.digest
    assert client.sent.digest != server.sent.digest  # the two directions really differ
    assert hwm < 100 * 1000 * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """Our own redis-server on a free port, no persistence; its address."""
    port = free_port()
    proc = Proc(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=str(tmp_path),
    )
    try:
        proc.wait_for(r"Ready to accept connections")
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def redis_cli(port: int, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_a_redis_client_works_through_it(start_tidegate, redis_server: str) -> None:
    proc = start_tidegate(tcp_config([redis_server]))
    _, port = proc.address("tcp")
    assert redis_cli(port, "PING") == b"PONG\n"
    assert redis_cli(port, "SET", "greeting", "hello through tidegate") == b"OK\n"
    assert redis_cli(port, "GET", "greeting") == b"hello through tidegate\n"
    # A value larger than every buffer on the way, in and out again.
    big = bytes(random.Random(7).randbytes(3 << 20)).hex().encode()  # 6 MiB of text
    assert redis_cli(port, "-x", "SET", "big", stdin=big) == b"OK\n"
    assert redis_cli(port, "STRLEN", "big") == b"%d\n" % len(big)
    assert redis_cli(port, "--no-raw", "GET", "big").strip().strip(b'"') == big
    # Many clients and pipelining at once.
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", "20000", "-c", "20", "-P", "8"]
    bench = subprocess.run(
        [*argv, "-t", "set,get,incr", "-q", "--csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert bench.stdout.count('"') >= 6, bench.stdout + bench.stderr
    assert redis_cli(port, "GET", "counter:__rand_int__") == b"20000\n"


@pytest.fixture
def echoes() -> Iterator[Callable[[str], ThreadedNamedEcho]]:
    made: list[ThreadedNamedEcho] = []

    def make(name: str) -> ThreadedNamedEcho:
        made.append(ThreadedNamedEcho(name))
        return made[-1]

    yield make
    for e in made:
        e.close()


def open_named(address: tuple[str, int]) -> tuple[str, socket.socket]:
    sock = socket.create_connection(address, timeout=10)
    name = b""
    while not name.endswith(b"\n"):
        byte = sock.recv(1)
        assert byte, "closed before the instance said its name"
        name += byte
    return name.decode().strip(), sock


def echo_once(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_drain_through_the_admin_api(start_tidegate, echoes) -> None:
    """Draining an instance over the API: its open connection keeps working while new ones go to
    the other instance; after the drain grace it is cut, and the API and /metrics count it."""
    a, b = echoes("a"), echoes("b")
    config = '[admin]\nlisten = "127.0.0.1:0"\n' + tcp_config([a.address, b.address], drain_grace="2s")
    proc = start_tidegate(config)
    admin = "http://{}:{}".format(*proc.address("admin"))
    tcp = proc.address("tcp")
    opened = dict(open_named(tcp) for _ in range(2))
    assert set(opened) == {"a", "b"}
    with httpx.Client(base_url=admin, timeout=10) as api, opened["a"], opened["b"]:
        r = api.post(f"/api/pools/p/instances/{a.address}/drain")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "draining"
        for _ in range(4):
            name, sock = open_named(tcp)
            sock.close()
            assert name == "b"
        assert echo_once(opened["a"], b"still served") == b"still served"
        (pool,) = api.get("/api/pools").json()["pools"]
        assert 0 < pool["tcp"]["drain_cut_in"][a.address] <= 2
        by_address = {i["address"]: i for i in pool["instances"]}
        assert by_address[a.address]["state"] == "draining"
        assert by_address[a.address]["connections"] == 1
        assert by_address[b.address]["tcp"]["opened"] == 5
        # The grace expires: the connection on the draining instance is cut (FIN or reset).
        opened["a"].settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert opened["a"].recv(1) == b""
        assert echo_once(opened["b"], b"untouched") == b"untouched"
        (pool,) = api.get("/api/pools").json()["pools"]
        assert pool["tcp"]["drain_cut"] == 1
        by_address = {i["address"]: i for i in pool["instances"]}
        assert by_address[a.address]["tcp"]["drain_cut"] == 1
        assert by_address[a.address]["connections"] == 0
        metrics = api.get("/metrics").text
        assert (
            f'tidegate_tcp_instance_drain_cut_connections_total{{instance="{a.address}",listener="tcp",pool="p"}} 1.0'
            in metrics
        )


def test_sigterm_closes_the_listener_and_lets_open_connections_finish(start_tidegate, echoes) -> None:
    a = echoes("a")
    proc = start_tidegate(tcp_config([a.address]), "--grace", "20")
    tcp = proc.address("tcp")
    name, sock = open_named(tcp)
    with sock:
        assert name == "a"
        proc.signal(signal.SIGTERM)
        # The listener goes first: a new connection is refused, the open one still relays.
        wait_refused(tcp)
        assert echo_once(sock, b"after SIGTERM") == b"after SIGTERM"
        assert proc.popen.poll() is None
    proc.popen.wait(10)
    assert proc.popen.returncode == 0


def wait_refused(address: tuple[str, int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)  # waiting for a port to close: there is no other signal
    raise AssertionError(f"{address} still accepts connections")
