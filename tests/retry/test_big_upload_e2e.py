"""A 1 GiB upload through the gateway to an instance that first refuses and then accepts:
byte-identical at the instance, the gateway's peak RSS under 150 MB, the spool file gone."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tidegate.testing.faults import FaultInstance
from tidegate.testing.process import Proc

GiB = 1 << 30
BLOCK = 1 << 20
RSS_LIMIT_KB = 150 * 1000  # 150 MB


def spool_fds(pid: int, spool: Path) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(str(spool) + "/"):
                found.append(target)
    return found


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, body


@pytest.mark.slow
def test_one_gib_upload_refused_then_accepted(
    tmp_path: Path,
    gateway: Callable[..., Any],
    instances: Callable[..., FaultInstance],
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    refusing = instances(listen=False)
    # The accepting instance is a process of its own, so that its checksum does not share the
    # test's interpreter lock with the client's.
    echo = Proc([sys.executable, "-m", "tidegate.testing.faults", "echo", "--name", "accepting"])
    try:
        echo.wait_for(r"tidegate: fault listening on")
        accepting = echo.listening["fault"]
        # Round-robin starts at the first instance: the upload meets the refusing one first.
        gw = gateway([refusing.address, accepting], spool_dir=str(spool), body_in_memory="1MiB")
        pid = gw.proc.popen.pid
        base = os.urandom(BLOCK)
        digest = hashlib.sha256()
        started = time.monotonic()
        spooled_midway: list[str] = []
        with socket.create_connection((gw.host, gw.port)) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % GiB)
            for i in range(GiB // BLOCK):
                block = i.to_bytes(8, "big") + base[8:]  # distinct blocks: order matters
                digest.update(block)
                sock.sendall(block)
                if i == GiB // BLOCK // 2:
                    spooled_midway = spool_fds(pid, spool)
            status, body = read_response(sock)
        elapsed = time.monotonic() - started
        answer = json.loads(body)
        assert status == 200, body
        assert answer["bytes"] == GiB
        assert answer["sha256"] == digest.hexdigest()
        assert answer["instance"] == "accepting"

        entry = gw.log_entry("/upload")  # written after the request's body store is closed
        assert entry["tries"] == 2 and entry["upstream"] == accepting  # refused, then accepted
        rss_kb = peak_rss_kb(pid)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        assert len(spooled_midway) == 1  # the body went to a temporary file in spool_dir...
        assert spool_fds(pid, spool) == [] and os.listdir(spool) == []  # ...which is gone now
        assert rss_kb < RSS_LIMIT_KB
        print(
            f"1 GiB upload: {elapsed:.1f}s ({GiB / elapsed / 1e6:.0f} MB/s), gateway VmHWM {rss_kb / 1000:.1f} MB, gateway CPU {cpu:.1f}s"
        )
    finally:
        echo.stop()
