"""Request bodies through a real gateway: 413 beyond the limit, 507 when the spool directory is
unusable (no crash, nothing left behind), a spooled body replayed byte for byte on a retry, and
the spool file released when the client goes away mid-upload."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidegate.testing.faults import FaultInstance, Mode

MiB = 1 << 20


def spool_fds(gw: Any, spool: Path) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{gw.proc.popen.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{gw.proc.popen.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{spool}/"):
            found.append(target)
    return found


def test_413_beyond_max_body_bytes(
    gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    echo = instances(Mode.ECHO)
    gw = gateway([echo.address], max_body="1MiB", body_in_memory="64KiB")
    assert gw.request("POST", "/ok", body=b"x" * MiB).status == 200  # exactly the limit
    res = gw.request("POST", "/big", body=b"x" * (MiB + 1))
    assert res.status == 413
    assert [s.path for s in echo.requests()] == ["/ok"]  # declared too large: never sent upstream
    assert gw.request("GET", "/after").status == 200


def test_unusable_spool_dir_is_507_not_a_crash(
    tmp_path: Path, gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    echo = instances(Mode.ECHO)
    spool = tmp_path / "missing"
    gw = gateway([echo.address], spool_dir=str(spool), body_in_memory="64KiB")
    assert gw.request("POST", "/small", body=b"x" * 1000).status == 200  # fits in memory
    res = gw.request("POST", "/spools", body=b"x" * (2 * MiB))
    assert res.status == 507 and not res.cut
    assert gw.request("GET", "/after").status == 200  # the gateway lives on
    assert not spool.exists() and gw.proc.popen.poll() is None


def test_a_spooled_body_is_replayed_on_retry(
    tmp_path: Path, gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    lost, echo = instances(Mode.CLOSE), instances(Mode.ECHO)
    gw = gateway([lost.address, echo.address], spool_dir=str(spool), body_in_memory="256KiB")
    body = os.urandom(8 * MiB)
    # PUT is idempotent: lost after the whole body went to the first instance, it is retried
    # from the spool file on the second one.
    res = gw.request("PUT", "/replay", body=body)
    assert res.status == 200, res
    assert [s.sha256 for s in lost.requests()] == [hashlib.sha256(body).hexdigest()]
    assert res.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert gw.log_entry("/replay")["tries"] == 2
    assert spool_fds(gw, spool) == [] and os.listdir(spool) == []


def test_client_gone_mid_upload_releases_the_spool_file(
    tmp_path: Path, gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    slow = instances(Mode.SLOW)  # never answers: the upload stays in the gateway's hands
    gw = gateway([slow.address], spool_dir=str(spool), body_in_memory="64KiB", response_timeout="30s")
    with socket.create_connection((gw.host, gw.port)) as sock:
        sock.sendall(b"POST /gone HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (64 * MiB))
        sock.sendall(b"y" * (4 * MiB))
        deadline = time.monotonic() + 10
        while not spool_fds(gw, spool):  # the gateway spooled what it got so far
            assert time.monotonic() < deadline, "no spool file appeared"
            time.sleep(0.01)
    deadline = time.monotonic() + 10
    while spool_fds(gw, spool):  # ...and releases it once the client is gone
        assert time.monotonic() < deadline, f"spool file still open: {spool_fds(gw, spool)}"
        time.sleep(0.01)
    assert os.listdir(spool) == []


def test_a_retry_replays_the_stored_part_then_follows_the_upload(
    tmp_path: Path, gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    """The first attempt streams while the upload arrives and is lost mid-body; the retry sends
    what is stored so far from the start (from the spool file), then the rest as it comes."""
    spool = tmp_path / "spool"
    spool.mkdir()
    lost = instances(Mode.CLOSE, close_after=2 * MiB)
    echo = instances(Mode.ECHO)
    gw = gateway([lost.address, echo.address], spool_dir=str(spool), body_in_memory="256KiB")
    body = os.urandom(12 * MiB)
    with socket.create_connection((gw.host, gw.port)) as sock:
        sock.sendall(b"PUT /midway HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[: 4 * MiB])
        [first] = lost.wait_seen(1)  # the first attempt is lost while the upload goes on
        assert 2 * MiB <= first.body_bytes < len(body)
        sock.sendall(body[4 * MiB :])
        sock.settimeout(20)
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert hashlib.sha256(body).hexdigest().encode() in answer
    assert [s.body_bytes for s in echo.requests()] == [len(body)]
    assert gw.log_entry("/midway")["tries"] == 2
    assert spool_fds(gw, spool) == []
