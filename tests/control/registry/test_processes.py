"""`tidegate run` processes and `tidegate serve` supervisors sharing one real etcd."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tidegate.testing.backends import Backend
from tidegate.testing.etcd import Etcd
from tidegate.testing.process import Proc, child_env, reap

GATEWAY = """
[admin]
listen = "127.0.0.1:0"
[registry]
type = "etcd"
endpoints = ["{etcd}"]
prefix = "{prefix}"
lease = "2s"
[[pools]]
name = "web"
instances = [{instances}]
[[http]]
listen = "127.0.0.1:0"
pool = "web"
"""

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(scope["server"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def gateway_config(etcd: Etcd, prefix: str, *addresses: str) -> str:
    instances = ", ".join(f'{{ address = "{a}" }}' for a in addresses)
    return GATEWAY.format(etcd=etcd.url, prefix=prefix, instances=instances)


def answers(proc: Proc, n: int) -> list[str]:
    host, port = proc.address("http")
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=5) as client:
        return [client.get("/").text for _ in range(n)]


def admin(proc: Proc) -> httpx.Client:
    return httpx.Client(base_url="http://" + proc.listening["admin"], timeout=5)


def states(proc: Proc) -> dict[str, str]:
    with admin(proc) as client:
        pool = client.get("/api/pools/web").json()
    return {i["address"]: i["state"] for i in pool["instances"]}


def test_drain_on_one_gateway_reaches_the_other_through_etcd_outages(
    tmp_path: Path, start_tidegate: Callable[..., Proc]
) -> None:
    etcd = Etcd(tmp_path / "etcd")  # not started: the gateways come up without it
    x, y = Backend("x"), Backend("y")
    try:
        config = gateway_config(etcd, "/gw/", x.address, y.address)
        one = start_tidegate(config, name="one.toml")
        two = start_tidegate(config, name="two.toml")
        for p in (one, two):
            p.wait_for(r"tidegate: registry cannot reach etcd")
        assert sorted(answers(two, 4)) == ["x", "x", "y", "y"]  # serving from the file meanwhile

        etcd.start()
        for p in (one, two):
            p.wait_for(r"tidegate: registry synced with etcd")
        with admin(one) as client:
            assert client.post(f"/api/pools/web/instances/{x.address}/drain").json()["state"] == "draining"
        two.wait_for(
            rf"pool web: {re.escape(x.address)} up -> draining \(operator: drain \(etcd registry\)\)"
        )
        assert states(two) == {x.address: "draining", y.address: "up"}
        assert answers(two, 6) == ["y"] * 6  # the other gateway no longer sends there

        etcd.kill()
        for p in (one, two):
            p.wait_for(r"tidegate: registry lost etcd")
        with admin(two) as client:
            r = client.post(f"/api/pools/web/instances/{x.address}/enable")
        assert r.status_code == 503 and "nothing changed" in r.json()["error"]
        assert states(two)[x.address] == "draining" and answers(two, 2) == ["y", "y"]

        etcd.start()  # the same data: the drain is still there
        for p in (one, two):
            p.wait_for(r"tidegate: registry resynced with etcd")
        with admin(two) as client:
            assert client.post(f"/api/pools/web/instances/{x.address}/enable").status_code == 200
        one.wait_for(
            rf"pool web: {re.escape(x.address)} draining -> up \(operator: enable \(etcd registry\)\)"
        )
        assert sorted(answers(one, 4)) == ["x", "x", "y", "y"]
    finally:
        x.stop()
        y.stop()
        etcd.stop()


def test_serve_registers_under_a_lease_that_dies_with_the_supervisor(
    tmp_path: Path, shared_etcd: Etcd, start_tidegate: Callable[..., Proc]
) -> None:
    config = gateway_config(shared_etcd, "/leased/")
    one = start_tidegate(config, name="one.toml")
    two = start_tidegate(config, name="two.toml")
    (tmp_path / "regapp.py").write_text(APP)
    env = child_env()
    env["PYTHONPATH"] += ":" + str(tmp_path)
    url = shared_etcd.url.replace("http://", "etcd://") + "/leased/"

    pids: list[int] = []  # the instances: orphaned by the SIGKILL, they must still end

    def serve() -> tuple[Proc, list[str]]:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "tidegate",
                "serve",
                "regapp:app",
                "-n",
                "2",
                "--port",
                "0",
                "--register",
                url,
                "--pool",
                "web",
                "--lease",
                "2",
                "--drain-window",
                "0.2",
            ],
            env=env,
        )
        proc.wait_for(r"tidegate: ready \(2 instances")
        pids.extend(int(p) for p in re.findall(r"instance listening on \S+ pid=(\d+)", "\n".join(proc.lines)))
        found = re.findall(
            r"tidegate: registered (\S+) in pool 'web' \(etcd /leased/\)", "\n".join(proc.lines)
        )
        return proc, sorted(found)

    supervisor, addresses = serve()
    try:
        assert len(addresses) == 2
        for p in (one, two):
            for a in addresses:
                p.wait_for(rf"pool web instance {re.escape(a)}: added \(etcd registry, weight 1\)")
        assert sorted(answers(two, 4)) == sorted(a.rpartition(":")[2] for a in addresses * 2)
        with admin(one) as client:
            meta = client.get(f"/api/pools/web/instances/{addresses[0]}").json()["meta"]
        assert meta["supervisor"].startswith("http://127.0.0.1:")  # `tidegate upgrade` finds it there

        supervisor.popen.kill()  # no goodbye: only the lease's expiry takes the instances out
        killed = time.monotonic()
        supervisor.stop()
        for p in (one, two):
            for a in addresses:
                p.wait_for(rf"pool web instance {re.escape(a)}: removed \(etcd registry\)", timeout=15)
        gone_after = time.monotonic() - killed
        print(f"instances gone from both gateways {gone_after:.2f} s after the SIGKILL (lease 2 s)")
        assert 1.0 < gone_after < 8.0, gone_after  # the 2 s TTL, as etcd counts it
        assert states(one) == {} and states(two) == {}
        assert reap(pids) == [], "instances outlived their killed supervisor"
    finally:
        supervisor.stop()
        reap(pids)

    # a supervisor that stops properly revokes its lease: the instances leave at once
    supervisor, addresses = serve()
    for a in addresses:
        two.wait_for(rf"pool web instance {re.escape(a)}: added \(etcd registry, weight 1\)")
    stopped = time.monotonic()
    supervisor.stop()
    assert "tidegate: deregistered from etcd" in supervisor.output()
    for a in addresses:
        two.wait_for(rf"pool web instance {re.escape(a)}: removed \(etcd registry\)")
    assert time.monotonic() - stopped < 5.0
