"""`tidegate serve` without a gateway: its processes, its control endpoint, restarts and crashes."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tidegate.testing.process import Proc


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
