"""`tidegate run` with a [[tcp]] listener, as a separate process, through real sockets."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate.testing.process import Proc
from tidegate.testing.tcp_peers import BulkEnd

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
