"""`kill -USR2`: a new tidegate process takes the listeners and the operator state over, under
load, three times in a row; a new process that cannot start leaves the old one serving. Real
processes, wrk and real sockets."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc, child_env, run_tidegate, tidegate

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def config(a: Backend, b: Backend) -> str:
    return f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [{{ address = "{a.address}" }}, {{ address = "{b.address}" }}]

[[http]]
listen = "127.0.0.1:0"
pool = "web"

[[tcp]]
listen = "127.0.0.1:0"
pool = "web"
"""


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    with Backend("a") as a, Backend("b") as b:
        yield a, b


def api(addr: tuple[str, int], method: str = "GET", path: str = "/api/pools/web") -> Any:
    # The operator's reads may meet the old admin server as it closes during a switch (a reset,
    # seen once in a fresh-clone run): an operator retries, and so does this. The zero-error
    # promise is about the HTTP and TCP traffic, which the load checks below count.
    for attempt in range(3):
        conn = http.client.HTTPConnection(*addr, timeout=10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            body = r.read()
            assert r.status < 300, (r.status, body)
            return json.loads(body)
        except (ConnectionResetError, http.client.RemoteDisconnected):
            if attempt == 2 or method != "GET":
                raise
        finally:
            conn.close()
    raise AssertionError("unreachable")


def requests_total(addr: tuple[str, int]) -> int:
    return int(api(addr)["totals"]["requests"])


def counters(addr: tuple[str, int]) -> dict[str, float]:
    """Every cumulative sample of /metrics (counters, histogram counts and sums) by name and labels."""
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out = {}
    for family in text_string_to_metric_families(text):
        # process_*: the figures of the process that answers, which a new process starts afresh.
        if family.type in ("counter", "histogram") and not family.name.startswith("process_"):
            for s in family.samples:
                if not s.name.endswith("_created"):
                    out[f"{s.name}{sorted(s.labels.items())}"] = s.value
    assert out, text
    return out


def grew(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The samples of `before` that are missing from `after` or smaller there."""
    return [f"{k}: {v} -> {after.get(k)}" for k, v in before.items() if after.get(k, -1.0) < v]


def pid_of(path: Path) -> int:
    return int(path.read_text().strip())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


class OneShots:
    """A loop of one-request connections (HTTP/1.1 GET, `Connection: close`) to one address,
    counting answers that are not 200, refused connects and other socket errors."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.ok = 0
        self.bad: list[str] = []
        self.refused = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        while not self._stop.is_set():
            try:
                with socket.create_connection(self.addr, timeout=10) as s:
                    s.sendall(request)
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError as exc:
                self.errors.append(repr(exc))
                continue
            if data.startswith(b"HTTP/1.1 200 "):
                self.ok += 1
            else:
                self.bad.append(data[:80].decode("latin-1"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)


def current_stop(proc: Proc, pid_file: Path) -> None:
    """SIGTERM whichever process is current and wait for the output to end (every process that
    shared it has exited)."""
    if pid_file.exists():
        os.kill(pid_of(pid_file), signal.SIGTERM)
    proc._reader.join(30)
    proc.stop()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_three_self_upgrades_under_load(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    a, b = backends
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(config(a, b))
    pid_file = tmp_path / "tidegate.pid"
    proc = tidegate("run", str(cfg), "--grace", "10", "--pid-file", str(pid_file))
    try:
        proc.wait_for(r"tidegate: ready")
        admin, http_addr, tcp_addr = proc.address("admin"), proc.address("http"), proc.address("tcp")
        wait_until(pid_file.exists, 10, "the pid file")
        pids = [pid_of(pid_file)]
        assert pids[0] == proc.popen.pid
        # b is drained before the upgrades: nothing may reach it during or after them.
        api(admin, "POST", f"/api/pools/web/instances/{b.address}/drain")
        b_seen = len(b.paths)
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c16", "-d120s", f"http://{http_addr[0]}:{http_addr[1]}/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        loops = [OneShots(http_addr), OneShots(tcp_addr)]
        totals = [requests_total(admin)]
        figures = [counters(admin)]
        try:
            wait_until(lambda: all(loop.ok > 20 for loop in loops), 30, "the loops got going")
            for _ in range(3):
                mark = len(proc.lines)
                before = requests_total(admin)
                totals.append(before)
                figures.append(counters(admin))
                os.kill(pids[-1], signal.SIGUSR2)
                m = proc.wait_for_new(r"tidegate: upgraded to pid (\d+)", mark, timeout=60)
                new = int(m.group(1))
                wait_until(lambda: pid_of(pid_file) == new, 10, "the pid file names the new process")  # noqa: B023
                old = pids[-1]
                pids.append(new)
                totals.append(requests_total(admin))
                figures.append(counters(admin))
                if old == proc.popen.pid:
                    proc.popen.wait(30)
                else:
                    wait_until(lambda: not alive(old), 30, f"the old process {old} exited")  # noqa: B023
                # Load flows on through the new process before the next upgrade.
                done = [loop.ok for loop in loops]
                wait_until(
                    lambda: all(loop.ok > n + 20 for loop, n in zip(loops, done, strict=True)),  # noqa: B023
                    30,
                    "requests through the new process",
                )
                totals.append(requests_total(admin))
                figures.append(counters(admin))  # the old process's last increase is in by now
        finally:
            for loop in loops:
                loop.stop()
            wrk.send_signal(signal.SIGINT)
            out, _ = wrk.communicate(timeout=30)
        totals.append(requests_total(admin))
        print(out)
        assert len(set(pids)) == 4, pids
        for loop in loops:
            assert (loop.bad, loop.errors, loop.refused) == ([], [], 0), loop.addr
        assert "Socket errors" not in out, out
        assert "Non-2xx" not in out, out
        done = re.search(r"(\d+) requests in", out)
        assert done is not None and int(done.group(1)) > 100, out
        assert len(b.paths) == b_seen, "a drained instance received requests"
        assert totals == sorted(totals), totals
        # Every counter of /metrics only grew (instances', the TCP listener's, ...), across all.
        assert any("tcp" in k for k in figures[0]), figures[0]
        for before, after in itertools.pairwise(figures):
            assert grew(before, after) == [], grew(before, after)
        assert api(admin)["instances"][1]["state"] == "draining"
    finally:
        current_stop(proc, pid_file)


def test_a_config_made_invalid_on_disk_fails_the_upgrade_and_the_old_process_serves_on(
    tmp_path: Path, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(config(a, b))
    pid_file = tmp_path / "tidegate.pid"
    proc = tidegate("run", str(cfg), "--pid-file", str(pid_file))
    try:
        proc.wait_for(r"tidegate: ready")
        http_addr = proc.address("http")
        cfg.write_text(config(a, b) + "\n[[http]]\nlisten = 12\n")
        mark = len(proc.lines)
        proc.signal(signal.SIGUSR2)
        m = proc.wait_for_new(r"tidegate: self-upgrade failed: (.*)", mark, timeout=60)
        assert "exited with status 2 before it asked for the sockets" in m.group(1)
        assert proc.popen.poll() is None
        assert pid_of(pid_file) == proc.popen.pid
        conn = http.client.HTTPConnection(*http_addr, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        current_stop(proc, pid_file)


def test_code_that_raises_at_import_fails_the_upgrade_and_the_old_process_serves_on(
    tmp_path: Path, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(config(a, b))
    broken = tmp_path / "broken"
    broken.mkdir()
    # Read by the new process only: the marker file appears after the old one has started.
    (broken / "sitecustomize.py").write_text(
        "import os, sys\n"
        "class Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == 'tidegate.control.runtime.process' and os.path.exists({str(tmp_path / 'break')!r}):\n"
        "            raise ImportError('a release that does not import')\n"
        "sys.meta_path.insert(0, Broken())\n"
    )
    env = child_env({"PYTHONPATH": child_env()["PYTHONPATH"] + os.pathsep + str(broken)})
    proc = tidegate("run", str(cfg), env=env)
    try:
        proc.wait_for(r"tidegate: ready")
        http_addr = proc.address("http")
        (tmp_path / "break").write_text("")
        mark = len(proc.lines)
        proc.signal(signal.SIGUSR2)
        m = proc.wait_for_new(r"tidegate: self-upgrade failed: (.*)", mark, timeout=60)
        assert "exited with status 1 before it asked for the sockets" in m.group(1)
        assert any("a release that does not import" in line for line in proc.lines[mark:])
        assert proc.popen.poll() is None
        conn = http.client.HTTPConnection(*http_addr, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.stop()


def test_ctl_self_upgrade_through_the_admin_api(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    a, b = backends
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(config(a, b))
    pid_file = tmp_path / "tidegate.pid"
    proc = tidegate("run", str(cfg), "--pid-file", str(pid_file))
    try:
        proc.wait_for(r"tidegate: ready")
        admin = "{}:{}".format(*proc.address("admin"))
        api(proc.address("admin"), "POST", f"/api/pools/web/instances/{a.address}/maint")
        done = run_tidegate("ctl", "--admin", admin, "self-upgrade")
        assert done.returncode == 0, done.stderr
        m = re.search(r"upgraded: pid (\d+) is current", done.stdout)
        assert m is not None, done.stdout
        assert pid_of(pid_file) == int(m.group(1)) != proc.popen.pid
        proc.popen.wait(30)
        # The new process answers on the same admin address, with the operator's maint kept.
        assert api(proc.address("admin"))["instances"][0]["state"] == "maint"
    finally:
        current_stop(proc, pid_file)


def test_http_workers_and_dns_are_handed_over_with_the_health_verdicts(tmp_path: Path) -> None:
    import dns.message
    import dns.query

    dead = socket.socket()
    dead.bind(("127.0.0.3", 0))  # bound, never listening: its health checks fail
    alive = socket.socket()
    alive.bind(("127.0.0.2", 0))
    alive.listen(64)

    def accept() -> None:  # the health checks' connections, so the queue never fills
        with contextlib.suppress(OSError):
            while True:
                alive.accept()[0].close()

    threading.Thread(target=accept, daemon=True).start()
    with Backend("a") as a, Backend("b") as b:
        cfg = tmp_path / "tidegate.toml"
        cfg.write_text(
            f"""
[[pools]]
name = "web"
instances = [{{ address = "{a.address}" }}, {{ address = "{b.address}" }}]

[[pools]]
name = "names"
instances = [
  {{ address = "127.0.0.2:{alive.getsockname()[1]}" }},
  {{ address = "127.0.0.3:{dead.getsockname()[1]}" }},
]
[pools.health]
type = "tcp"
interval = "200ms"
timeout = "150ms"
rise = 2
fall = 1

[[http]]
listen = "127.0.0.1:0"
pool = "web"
workers = 2

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
[[dns.records]]
name = "www.example.test."
pool = "names"
ttl = 5
answers = 2
"""
        )
        pid_file = tmp_path / "tidegate.pid"
        proc = tidegate("run", str(cfg), "--pid-file", str(pid_file))
        try:
            proc.wait_for(r"tidegate: ready")
            proc.wait_for(r"127\.0\.0\.3:\d+ up -> down", timeout=20)
            http_addr, (dns_host, dns_port) = proc.address("http"), proc.address("dns")

            def ips(tcp: bool = False) -> set[str]:
                q = dns.message.make_query("www.example.test.", "A")
                ask = dns.query.tcp if tcp else dns.query.udp
                r = ask(q, dns_host, port=dns_port, timeout=5)
                return {rd.address for rrset in r.answer for rd in rrset}

            assert ips() == ips(tcp=True) == {"127.0.0.2"}
            loop = OneShots(http_addr)
            try:
                wait_until(lambda: loop.ok > 20, 30, "the loop got going")
                mark = len(proc.lines)
                proc.signal(signal.SIGUSR2)
                m = proc.wait_for_new(r"tidegate: upgraded to pid (\d+)", mark, timeout=60)
                proc.popen.wait(30)
                # The verdict came along: the dead instance is not answered again, not even once
                # before the new process's own checks (rise = 2) would have had their say.
                assert ips() == ips(tcp=True) == {"127.0.0.2"}, proc.output()
                done = loop.ok
                wait_until(lambda: loop.ok > done + 20, 30, "requests through the new workers")
            finally:
                loop.stop()
            assert (loop.bad, loop.errors, loop.refused) == ([], [], 0)
            assert pid_of(pid_file) == int(m.group(1))
            assert not any("127.0.0.3" in line and "-> up" in line for line in proc.lines[mark:])
        finally:
            current_stop(proc, pid_file)
            dead.close()
            alive.shutdown(socket.SHUT_RDWR)
            alive.close()
