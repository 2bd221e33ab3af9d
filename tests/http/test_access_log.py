"""The access log from a running gateway: written on a short timer, and reopened on SIGUSR1
(logrotate moves the file, then signals: no copytruncate, no line lost), workers included."""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

import pytest

from tidegate.http.access_log import AccessLog
from tidegate.testing.backends import Backend
from tidegate.testing.process import child_env, tidegate
from tidegate.testing.wait import until


def _get(addr: tuple[str, int], path: str) -> int:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    finally:
        conn.close()
    return status


def _paths(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["path"] for line in log.read_text().splitlines()]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_reopens_the_access_log(tmp_path: Path, workers: int) -> None:
    log = tmp_path / "access.log"
    with Backend("b") as b:
        cfg = tmp_path / "t.toml"
        cfg.write_text(
            f'[[pools]]\nname = "web"\ninstances = [{{ address = "{b.address}" }}]\n'
            f'[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\nworkers = {workers}\naccess_log = "{log}"\n'
        )
        proc = tidegate("run", str(cfg), env=child_env({"TIDEGATE_PURE": "1"}))
        try:
            proc.wait_for(r"tidegate: ready", timeout=60)
            addr = proc.address("http")
            assert _get(addr, "/before") == 200
            until(lambda: _paths(log) == ["/before"], timeout=10, message=proc.output())
            rotated = tmp_path / "access.log.1"
            log.rename(rotated)  # what logrotate does first
            assert _get(addr, "/moved") == 200  # still written to the moved file
            until(lambda: _paths(rotated) == ["/before", "/moved"], timeout=10, message=proc.output())
            mark = len(proc.lines)
            proc.signal(signal.SIGUSR1)
            proc.wait_for_new(r"tidegate: log files reopened", mark, timeout=20)
            # A worker reopens on its own loop: keep asking until the new file has a line.
            for i in range(200):
                assert _get(addr, f"/after/{i}") == 200
                if log.exists() and _paths(log):
                    break
                until(lambda n=i: len(_paths(rotated)) + len(_paths(log)) == n + 3, timeout=10)
            # Once a worker has reopened, all of its lines go to the new file.
            assert _get(addr, "/last") == 200
            until(lambda: "/last" in _paths(log) or "/last" in _paths(rotated), timeout=10)
            assert _paths(rotated)[:2] == ["/before", "/moved"]
            assert all(p.startswith("/after/") for p in _paths(rotated)[2:])
            assert _paths(log) and all(p.startswith(("/after/", "/last")) for p in _paths(log))
        finally:
            assert proc.stop() == 0
        # Nothing lost: every request is in one file or the other, once.
        everything = _paths(rotated) + _paths(log)
        assert sorted(everything) == sorted(set(everything)) and "/last" in everything


async def test_lines_wait_for_the_timer_and_stop_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = AccessLog(str(path))
    log.write('{"n":1}')
    log.write('{"n":2}')
    assert path.read_text() == ""  # buffered: no write per request
    log.close()
    assert path.read_text() == '{"n":1}\n{"n":2}\n'
