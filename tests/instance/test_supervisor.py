"""`tidegate serve` without a gateway: its processes, its control endpoint, restarts and crashes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tidegate.testing.process import Proc, reap, wait_exit


def serve(env: dict[str, str], *args: str) -> Proc:
    proc = Proc([sys.executable, "-m", "tidegate", "serve", "tgapp:app", "--port", "0", *args], env=env)
    return proc


def call(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def version_at(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/", timeout=10) as resp:
        return str(json.loads(resp.read())["version"])


def test_restart_runs_the_code_now_on_disk(write_app: Callable[..., dict[str, str]]) -> None:
    proc = serve(write_app("1"), "--instances", "2", "--drain-window", "0.1")
    try:
        proc.wait_for(r"tidegate: ready \(2 instances")
        control = "http://" + proc.listening["supervisor"]
        before = call(control + "/instances")
        assert [i["state"] for i in before] == ["running", "running"]
        assert {i["version"] for i in before} == {"1"}
        first, second = before[0]["address"], before[1]["address"]
        assert version_at(first) == "1"

        write_app("2")
        answer = call(f"{control}/instances/{first}/restart", "POST")
        assert answer == {"address": first, "generation": 2}
        proc.wait_for(rf"\[{first}\] tidegate: instance listening on {first} pid=\d+ version=2")
        after = {i["address"]: i for i in call(control + "/instances")}
        assert after[first]["generation"] == 2 and after[first]["state"] == "running"
        assert after[first]["pid"] != before[0]["pid"] and after[first]["last_exit"] == 0
        assert after[first]["restarts"] == 1 and after[first]["crashes"] == 0
        assert version_at(first) == "2"  # same address, new code
        assert version_at(second) == "1"  # the other one untouched
    finally:
        assert proc.stop() == 0


def test_a_crashed_instance_is_started_again(write_app: Callable[..., dict[str, str]]) -> None:
    proc = serve(write_app(), "--instances", "1")
    try:
        proc.wait_for(r"tidegate: ready")
        control = "http://" + proc.listening["supervisor"]
        (inst,) = call(control + "/instances")
        os.kill(inst["pid"], signal.SIGKILL)
        proc.wait_for(rf"instance {inst['address']} exited with code -9 \(crash 1 in a row\)")
        proc.wait_for(
            rf"\[{inst['address']}\] tidegate: instance listening on {inst['address']} pid=(?!{inst['pid']})"
        )
        (again,) = call(control + "/instances")
        assert again["crashes"] == 1 and again["generation"] == 2 and again["state"] == "running"
        assert version_at(inst["address"]) == "1"
    finally:
        assert proc.stop() == 0


def test_control_endpoint_rejects_unknown_instances(write_app: Callable[..., dict[str, str]]) -> None:
    proc = serve(write_app(), "--instances", "1")
    try:
        proc.wait_for(r"tidegate: ready")
        control = "http://" + proc.listening["supervisor"]
        try:
            call(f"{control}/instances/127.0.0.1:1/restart", "POST")
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            assert "no instance 127.0.0.1:1" in json.loads(exc.read())["error"]
    finally:
        proc.stop()


def test_an_app_that_cannot_start_stops_the_supervisor_with_its_error(
    write_app: Callable[..., dict[str, str]],
) -> None:
    bad = Proc([sys.executable, "-m", "tidegate", "serve", "tgapp:missing", "--port", "0"], env=write_app())
    try:
        assert bad.popen.wait(20) == 1
        bad.wait_for(r"exited with code 2 before listening")
        bad.wait_for(r'Attribute "missing" not found')
    finally:
        bad.stop()


def refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_an_instance_whose_supervisor_was_killed_while_it_was_stopped_exits_within_its_grace(
    write_app: Callable[..., dict[str, str]],
) -> None:
    """SIGSTOP the instance, SIGKILL its supervisor, SIGCONT: the instance drains and exits
    (it used to stay in its drain forever, answering 503, its output pipe gone)."""
    proc = serve(write_app(), "--instances", "1", "--grace", "3", "--drain-window", "0.2")
    inst_pid = 0
    try:
        m = proc.wait_for(r"instance listening on (\S+) pid=(\d+)")
        address, inst_pid = m.group(1), int(m.group(2))
        proc.wait_for(r"tidegate: ready")
        os.kill(inst_pid, signal.SIGSTOP)
        proc.popen.kill()
        proc.popen.wait(10)
        os.kill(inst_pid, signal.SIGCONT)
        started = time.monotonic()
        assert wait_exit(inst_pid, 30), "the orphaned instance is still running"
        took = time.monotonic() - started
        print(f"orphaned instance gone {took:.2f} s after SIGCONT (grace 3 s)")
        assert took < 3 + 5, took  # its grace, plus room for a loaded machine
        assert refused(address)
    finally:
        if inst_pid:
            reap([inst_pid], timeout=0)  # only if the test failed: it is gone otherwise
        proc.stop()


def test_an_instance_draining_when_its_supervisor_is_killed_finishes_its_drain(
    write_app: Callable[..., dict[str, str]],
) -> None:
    """A drain under way (a restart, a request in flight), then the supervisor is SIGKILLed: the
    request in flight still gets its answer (the parent's death does not cut the drain short)
    and the instance ends within its grace."""
    proc = serve(write_app(), "--instances", "1", "--grace", "4", "--drain-window", "0.2")
    inst_pid = 0
    try:
        m = proc.wait_for(r"instance listening on (\S+) pid=(\d+)")
        address, inst_pid = m.group(1), int(m.group(2))
        proc.wait_for(r"tidegate: ready")
        host, _, port = address.rpartition(":")
        slow = http.client.HTTPConnection(host, int(port), timeout=30)
        slow.request("GET", "/slow?s=1.5")
        proc.wait_for(r"tgapp: slow request in the app")
        control = "http://" + proc.listening["supervisor"]
        mark = len(proc.lines)
        call(f"{control}/instances/{address}/restart", "POST")
        proc.wait_for_new(r"tidegate: instance exiting \(SIGTERM\)", mark)
        began = time.monotonic()
        proc.popen.kill()
        proc.popen.wait(10)
        answer = slow.getresponse()
        assert answer.status == 200 and answer.getheader("connection") == "close"
        slow.close()
        assert wait_exit(inst_pid, 30), "the orphaned instance is still running"
        took = time.monotonic() - began
        print(f"draining orphan gone {took:.2f} s after its drain began (grace 4 s)")
        assert took < 4 + 5, took
    finally:
        if inst_pid:
            reap([inst_pid], timeout=0)  # only if the test failed: it is gone otherwise
        proc.stop()
