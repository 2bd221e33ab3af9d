"""The whole chain: `tidegate run` (gateway + admin API + health checks), `tidegate serve
--register` (3 instances), a load generator running through the whole rollout, `tidegate upgrade`.

The load is closed-loop over keep-alive connections, GETs and POSTs with bodies (each POST's echo
digest is checked), bounded in time. Zero non-2xx answers and zero connection errors is the bar.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tidegate.testing.load_generator import LoadGenerator, Result
from tidegate.testing.process import Proc, tidegate

CONFIG = """
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
scheduler = "round-robin"
slow_start = "300ms"
instances = []
[pools.health]
type = "http"
path = "/healthz"
interval = "100ms"
timeout = "500ms"
rise = 2
fall = 2

[[http]]
listen = "127.0.0.1:0"
pool = "web"
"""


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@dataclass
class Stack:
    gateway: Proc
    serve: Proc
    admin: str
    http: tuple[str, int]
    write_app: Callable[..., dict[str, str]]

    def pool(self) -> dict[str, Any]:
        doc = get_json(self.admin + "/api/pools")
        pools = doc["pools"] if isinstance(doc, dict) and "pools" in doc else doc
        return next(p for p in pools if p["name"] == "web")

    def states(self) -> dict[str, str]:
        return {i["address"]: i["state"] for i in self.pool()["instances"]}

    def wait_states(self, want: Callable[[dict[str, str]], bool], timeout: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if want(states):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"pool states never as wanted: {states}\n{self.gateway.output()}")
            time.sleep(0.05)  # polling the admin API for a condition, not waiting for time to pass

    def supervised(self) -> list[dict[str, Any]]:
        return list(get_json("http://" + self.serve.listening["supervisor"] + "/instances"))

    def upgrade(self, *args: str) -> Proc:
        return tidegate(
            "upgrade",
            "--admin",
            self.admin,
            "--pool",
            "web",
            "--health-timeout",
            "3",
            "--restart-timeout",
            "10",
            *args,
        )


@pytest.fixture
def stack(start_tidegate: Callable[..., Proc], write_app: Callable[..., dict[str, str]]) -> Iterator[Stack]:
    def start(*serve_args: str, config: str = CONFIG, instances: int = 3) -> Stack:
        gateway = start_tidegate(config)
        admin = "http://" + gateway.listening["admin"]
        host, port = gateway.address("http")
        serve = Proc(
            [
                sys.executable,
                "-m",
                "tidegate",
                "serve",
                "tgapp:app",
                "--instances",
                str(instances),
                "--port",
                "0",
                "--register",
                admin,
                "--pool",
                "web",
                "--drain-window",
                "0.3",
                "--grace",
                "10",
                *serve_args,
            ],
            env=write_app("1", True),
        )
        started.append(serve)
        serve.wait_for(r"tidegate: ready", timeout=30)
        s = Stack(gateway, serve, admin, (host, port), write_app)
        s.wait_states(lambda st: len(st) == instances and all(v == "up" for v in st.values()))
        return s

    started: list[Proc] = []
    yield start  # type: ignore[misc]
    for p in started:
        p.stop()


async def rollout_under_load(s: Stack, *upgrade_args: str) -> tuple[Proc, Result, float]:
    load = LoadGenerator(*s.http, connections=6, post_every=2, body_bytes=16 * 1024)
    load.start()
    await asyncio.sleep(0.3)  # some load before the rollout starts (part of the measurement)
    began = time.monotonic()
    up = s.upgrade(*upgrade_args)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, up.popen.wait, 90)
    took = time.monotonic() - began
    await asyncio.sleep(0.3)  # and some after
    result = await load.stop()
    up.stop()
    return up, result, took


def assert_no_loss(result: Result, up: Proc) -> None:
    assert result.problems() == [], f"client-visible errors: {result.problems()}\n--- upgrade:\n{up.output()}"
    assert len(result.status) > 200, "the load generator hardly ran"


async def test_rolling_upgrades_under_load_lose_nothing(stack: Callable[..., Stack]) -> None:
    """One instance at a time to version 2, then two at a time to version 3, on the same stack."""
    s = stack()
    for batch, old, new in (("1", "1", "2"), ("2", "2", "3")):
        before = {i["address"]: i for i in s.supervised()}
        assert {i["version"] for i in before.values()} == {old}
        s.write_app(new, True)  # the new code, on disk

        up, result, took = await rollout_under_load(s, "--batch", batch)

        assert up.popen.returncode == 0, up.output()
        up.wait_for(r"tidegate upgrade: done: all 3 instances of pool 'web' upgraded")
        up.wait_for(rf"3 instances in {3 if batch == '1' else 2} batches of up to {batch}")
        assert_no_loss(result, up)
        after = {i["address"]: i for i in s.supervised()}
        for address, inst in after.items():
            assert inst["version"] == new, after
            assert inst["generation"] == before[address]["generation"] + 1
            assert inst["pid"] != before[address]["pid"]
            up.wait_for(rf"{address}: version {old} → {new}")
        assert set(s.states().values()) <= {"up", "slow-start"}
        # Both versions answered during the rollout.
        assert result.versions[old] > 0 and result.versions[new] > 0
        print(f"batch {batch}: rollout {took:.1f} s, {result.summary()}")


async def test_a_new_version_failing_its_health_check_stops_the_rollout(stack: Callable[..., Stack]) -> None:
    s = stack("--app-health")
    s.write_app("2-bad", False)  # the new code answers 500 on /healthz

    up, result, _ = await rollout_under_load(s)

    assert up.popen.returncode == 1, up.output()
    m = up.wait_for(
        r"tidegate upgrade: FAILED: rollout of pool 'web' stopped: (\S+): the new process \(version 2-bad\) failed its health check"
    )
    bad = m.group(1)
    up.wait_for(r"last answer: 500\); it stays out of rotation, the rest of the pool serves")
    up.wait_for(r"not started: ")  # the two others were not touched
    assert_no_loss(result, up)
    states = s.states()
    assert states.pop(bad) == "draining"
    assert set(states.values()) == {"up"}
    # The pool keeps serving, on the old version, from the two it still has.
    versions = {i["address"]: i["version"] for i in s.supervised()}
    assert versions.pop(bad) == "2-bad" and set(versions.values()) == {"1"}
    assert set(result.versions) == {"1"}

    # The supervisor's exit takes its instances out of the pool the graceful way.
    assert s.serve.stop() == 0
    for address in [bad, *versions]:
        s.serve.wait_for(rf"tidegate: drained and removed {address} from pool 'web'")
    assert s.pool()["instances"] == []


DNS_CONFIG = (
    CONFIG
    + """
[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 1
"""
)


def test_dns_layer_waits_for_the_ttl_and_says_so(stack: Callable[..., Stack]) -> None:
    s = stack(config=DNS_CONFIG, instances=2)
    assert s.pool()["dns"]["max_ttl"] == 1
    s.write_app("2", True)
    up = s.upgrade("--layer", "dns", "--dns-grace", "0.2")
    assert up.popen.wait(60) == 0, up.output()
    up.wait_for(r"withdraw from DNS answers, wait 1\.2 s \(max TTL 1 s \+ grace 0\.2 s\)")
    for _ in range(2):  # each instance: how long it waited, and why
        up.wait_for(r"settle: out of the DNS answers, then waited 1\.\d s for max TTL 1 s \+ grace 0\.2 s")
    assert len([ln for ln in up.lines if "then waited" in ln]) == 2
    assert {i["version"] for i in s.supervised()} == {"2"}
    up.stop()
