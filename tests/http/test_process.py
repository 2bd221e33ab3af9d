"""The gateway as `tidegate run` processes: memory on a big download, SIGHUP, SIGTERM."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc, child_env
from tidegate.testing.wire import ResponseReader


def toml(addresses: list[str], extra: str = "") -> str:
    instances = ", ".join(f'{{ address = "{a}" }}' for a in addresses)
    return f"""
[[pools]]
name = "web"
instances = [{instances}]

[[http]]
listen = "127.0.0.1:0"
pool = "web"
{extra}
"""


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def backend_process() -> Iterator[Proc]:
    import sys

    proc = Proc([sys.executable, "-m", "tidegate.testing.backends", "big"], env=child_env())
    proc.wait_for(r"tidegate: backend listening on")
    yield proc
    proc.stop()


def test_200mb_download_streams_with_bounded_memory(start_tidegate, backend_process) -> None:
    host, port = backend_process.address("backend")
    gw = start_tidegate(toml([f"{host}:{port}"]))
    ghost, gport = gw.address("http")
    size = 200 * 1024 * 1024
    with socket.create_connection((ghost, gport), timeout=30) as s:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        head, _, got = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % size in head
        # The client stalls for a second (the shape of the load, not a synchronisation): without
        # flow control the gateway would buffer what the instance sends meanwhile, >100 MB.
        time.sleep(1.0)
        received = len(got)
        buf = bytearray(1 << 20)
        while received < size:
            n = s.recv_into(buf)
            assert n, f"closed after {received} bytes"
            received += n
    assert received == size
    peak = vm_kib(gw.popen.pid, "VmHWM")
    print(f"gateway peak RSS after a {size >> 20} MiB download: {peak} KiB")
    assert peak < 100 * 1024, f"gateway peak RSS {peak} KiB"


def test_sighup_adds_an_instance_under_load_without_a_failed_request(start_tidegate) -> None:
    a, b, c = Backend("a"), Backend("b"), Backend("c")
    try:
        gw = start_tidegate(toml([a.address, b.address]))
        host, port = gw.address("http")
        stop = threading.Event()
        seen: Counter[str] = Counter()
        errors: list[str] = []
        lock = threading.Condition()

        def load() -> None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            while not stop.is_set():
                try:
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    body = r.read().decode()
                    with lock:
                        if r.status == 200:
                            seen[body] += 1
                        else:
                            errors.append(f"{r.status} {body}")
                        lock.notify_all()
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.close()

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            with lock:
                assert lock.wait_for(lambda: sum(seen.values()) >= 200, 20)
                assert seen["c"] == 0  # not in the pool before the reload
            gw.config_path.write_text(toml([a.address, b.address, c.address]))  # type: ignore[attr-defined]
            gw.signal(signal.SIGHUP)
            gw.wait_for(r"tidegate: reloaded")
            with lock:
                assert lock.wait_for(lambda: seen["c"] >= 100, 20)
        finally:
            stop.set()
            for t in threads:
                t.join(20)
        assert errors == []
        assert seen["c"] >= 100 and seen["a"] > 0 and seen["b"] > 0
    finally:
        for x in (a, b, c):
            x.stop()


def test_sigterm_finishes_in_flight_and_closes_idle(start_tidegate) -> None:
    with Backend("a") as a:
        gw = start_tidegate(toml([a.address]))
        host, port = gw.address("http")
        idle = socket.create_connection((host, port), timeout=10)
        idle.sendall(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
        idle_reader = ResponseReader(idle)
        assert idle_reader.read().status == 200

        result: dict[str, object] = {}

        def slow() -> None:
            conn = http.client.HTTPConnection(host, port, timeout=20)
            conn.request("GET", "/slow?ms=1500")
            r = conn.getresponse()
            result["status"], result["body"] = r.status, r.read()
            result["connection"] = r.getheader("Connection")
            conn.close()

        t = threading.Thread(target=slow)
        t.start()
        a.wait_for_request("/slow")
        gw.signal(signal.SIGTERM)
        gw.wait_for(r"http: stopping; 1 connections in flight")
        # the idle keep-alive connection is closed at once, the listener too
        assert idle_reader.read_until_close() == b""
        idle.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=5).close()
        t.join(20)
        assert result == {"status": 200, "body": b"a", "connection": "close"}
        assert gw.popen.wait(20) == 0
