"""`workers = N` in [[http]]: N gateway processes on one address, figures summed by the main
process, operator changes reaching every worker, a dead worker restarted. Real processes."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc
from tidegate.testing.wait import until

pytestmark = pytest.mark.timeout(90)


def config(a: Backend, b: Backend, workers: int = 2) -> str:
    return f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [{{ address = "{a.address}" }}, {{ address = "{b.address}" }}]

[[http]]
listen = "127.0.0.1:0"
pool = "web"
workers = {workers}
"""


def get(addr: tuple[str, int], path: str) -> tuple[int, bytes]:
    """One request on a new connection (so SO_REUSEPORT spreads them over the workers)."""
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def api(proc: Proc, method: str = "GET", path: str = "/api/pools", body: Any = None) -> Any:
    conn = http.client.HTTPConnection(*proc.address("admin"), timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read()
        assert r.status < 300, (r.status, text)
        return json.loads(text) if text and text[:1] in b"{[" else text.decode()
    finally:
        conn.close()


def pool_view(proc: Proc) -> dict[str, Any]:
    pools = api(proc)["pools"]
    return next(p for p in pools if p["name"] == "web")


def in_sync(proc: Proc) -> bool:
    return bool(pool_view(proc)["http"]["workers_in_sync"])


def worker_pids(proc: Proc) -> set[int]:
    children = Path(f"/proc/{proc.popen.pid}/task/{proc.popen.pid}/children").read_text().split()
    out = set()
    for pid in children:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"tidegate.workers.child" in cmd:
            out.add(int(pid))
    return out


def test_workers_share_the_address_and_the_figures_are_summed(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        pids = worker_pids(gw)
        assert len(pids) == 2
        addr = gw.address("http")
        n = 200
        for _ in range(n):
            assert get(addr, "/")[0] == 200
        view = until(lambda: (v := pool_view(gw))["totals"]["requests"] == n and v)
        per_worker = view["http"]["workers"]
        assert {w["pid"] for w in per_worker} == pids
        # 200 connections hashed over two sockets: both workers served some.
        assert all(w["requests"] > 0 for w in per_worker), per_worker
        assert sum(w["requests"] for w in per_worker) == n
        assert sum(i["requests"] for i in view["instances"]) == n
        assert view["totals"]["connections"] == 0
        assert view["totals"]["bytes_out"] > 0 and view["totals"]["bytes_in"] > 0
        metrics = api(gw, path="/metrics")
        served = sum(
            float(m.group(1))
            for m in re.finditer(
                r'^tidegate_instance_requests_total\{[^}]*pool="web"[^}]*\} (\S+)$', metrics, re.M
            )
        )
        assert served == n, metrics
        assert gw.stop() == 0
        assert all(
            not Path(f"/proc/{p}").exists() or "zombie" in Path(f"/proc/{p}/status").read_text() for p in pids
        )


def test_responses_are_counted_by_status_class_and_summed_over_workers(start_tidegate) -> None:
    """Each worker counts its instances' answers by class (1xx-5xx); /api/pools, /metrics and
    the history the dashboard draws add the workers' counts up."""
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        addr = gw.address("http")
        sent = {"/": 30, "/status/404": 20, "/status/500": 10}
        for path, n in sent.items():
            for _ in range(n):
                assert get(addr, path)[0] == {"/": 200, "/status/404": 404, "/status/500": 500}[path]
        want = {"1xx": 0, "2xx": 30, "3xx": 0, "4xx": 20, "5xx": 10}

        def summed() -> dict[str, int] | None:
            view = pool_view(gw)
            got = {c: sum(i["responses"][c] for i in view["instances"]) for c in want}
            return got if got == want else None

        until(summed, timeout=30)
        assert pool_view(gw)["totals"]["requests"] == 60
        metrics = api(gw, path="/metrics")
        by_code: dict[str, float] = {}
        for m in re.finditer(
            r'^tidegate_instance_responses_total\{([^}]*)\} (\S+)$', metrics, re.M
        ):
            code = re.search(r'code="(\dxx)"', m.group(1))
            assert code is not None and 'pool="web"' in m.group(1)
            by_code[code.group(1)] = by_code.get(code.group(1), 0) + float(m.group(2))
        assert by_code == {c: n for c, n in want.items() if n}, metrics

        def drawn() -> bool:
            # The history's per-second rates: some 4xx and 5xx seen across the points.
            pools = api(gw, path="/api/history")["pools"]["web"]["pool"]
            return sum(v or 0 for v in pools["responses_4xx_per_s"]) > 0 and sum(
                v or 0 for v in pools["responses_5xx_per_s"]
            ) > 0

        until(drawn, timeout=30)


def test_operator_drain_and_weight_reach_every_worker(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        addr = gw.address("http")
        api(gw, "POST", f"/api/pools/web/instances/{a.address}/drain")
        until(lambda: in_sync(gw))
        bodies = [get(addr, "/")[1] for _ in range(60)]
        assert set(bodies) == {b"b"}
        api(gw, "POST", f"/api/pools/web/instances/{a.address}/enable")
        api(gw, "PUT", f"/api/pools/web/instances/{b.address}/weight", {"weight": 0})
        until(lambda: in_sync(gw))
        bodies = [get(addr, "/")[1] for _ in range(60)]
        assert set(bodies) == {b"a"}


def test_a_drain_signal_seen_by_a_worker_reaches_the_main_process(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        get(gw.address("http"), "/drain")  # both instances answer the drain signal
        view = until(
            lambda: (v := pool_view(gw)) and all(i["state"] == "draining" for i in v["instances"]) and v
        )
        assert {i["health"]["cause"] for i in view["instances"] if "health" in i} <= {"drain signal", None}
        until(lambda: in_sync(gw))


def test_a_killed_worker_is_started_again_on_the_same_address(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        addr = gw.address("http")
        victim = sorted(worker_pids(gw))[0]
        os.kill(victim, signal.SIGKILL)
        gw.wait_for(r"worker \d exited .*; starting it again")
        pids = until(lambda: len(p := worker_pids(gw)) == 2 and victim not in p and p)
        until(lambda: all(w["pid"] in pids for w in pool_view(gw)["http"]["workers"]))
        for _ in range(50):
            assert get(addr, "/")[0] == 200
        until(lambda: pool_view(gw)["totals"]["requests"] >= 50)


def test_sighup_reaches_every_worker_and_the_figures_still_add_up(start_tidegate) -> None:
    with Backend("a") as a, Backend("b") as b, Backend("c") as c:
        gw = start_tidegate(config(a, b, workers=2))
        addr = gw.address("http")
        before = 40
        for _ in range(before):
            assert get(addr, "/")[0] == 200
        until(lambda: pool_view(gw)["totals"]["requests"] == before)
        per_worker_before = [w["requests"] for w in pool_view(gw)["http"]["workers"]]
        # The file now adds c and takes a and b out of the rotation (weight 0).
        text = config(a, b, workers=2).replace(
            f'instances = [{{ address = "{a.address}" }}, {{ address = "{b.address}" }}]',
            f'instances = [{{ address = "{a.address}", weight = 0 }}, {{ address = "{b.address}", weight = 0 }},'
            f' {{ address = "{c.address}" }}]',
        )
        gw.config_path.write_text(text)
        mark = len(gw.lines)
        gw.signal(signal.SIGHUP)
        gw.wait_for_new(r"tidegate: reloaded", mark)
        until(lambda: in_sync(gw))
        after = 120
        bodies = [get(addr, "/")[1] for _ in range(after)]
        assert set(bodies) == {b"c"}, sorted(set(bodies))
        view = until(lambda: (v := pool_view(gw))["totals"]["requests"] == before + after and v)
        per_worker = [w["requests"] for w in view["http"]["workers"]]
        # Both workers served requests after the reload, and every one of them went to c.
        assert all(now > then for now, then in zip(per_worker, per_worker_before, strict=True)), per_worker
        assert sum(per_worker) == before + after
        by_address = {i["address"]: i["requests"] for i in view["instances"]}
        assert by_address[c.address] == after
        assert by_address[a.address] + by_address[b.address] == before
        metrics = api(gw, path="/metrics")
        served = sum(
            float(m.group(1))
            for m in re.finditer(
                r'^tidegate_instance_requests_total\{[^}]*pool="web"[^}]*\} (\S+)$', metrics, re.M
            )
        )
        assert served == before + after, metrics


def test_a_sighup_sent_to_every_tidegate_process_reloads_once_and_kills_no_worker(start_tidegate) -> None:
    # `pkill -HUP tidegate`, or a hangup of the terminal's process group, reaches the workers too:
    # they take reloads from the main process only, and must not die of the signal's default.
    with Backend("a") as a, Backend("b") as b:
        gw = start_tidegate(config(a, b, workers=2))
        pids = worker_pids(gw)
        mark = len(gw.lines)
        for pid in pids:
            os.kill(pid, signal.SIGHUP)
        gw.signal(signal.SIGHUP)
        gw.wait_for_new(r"tidegate: reloaded", mark)
        until(lambda: in_sync(gw))
        addr = gw.address("http")
        for _ in range(20):
            assert get(addr, "/")[0] == 200
        assert worker_pids(gw) == pids
        assert not any("exited" in line for line in gw.lines[mark:]), gw.output()


def test_a_removed_workers_section_refuses_at_once_and_finishes_what_it_has(start_tidegate) -> None:
    with Backend("a") as a:
        pool = f'[[pools]]\nname = "web"\ninstances = [{{ address = "{a.address}" }}]\n'
        section = '[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\nworkers = 2\n'
        gw = start_tidegate(pool + section + section)
        addr = gw.address("http.1")
        slow = http.client.HTTPConnection(*addr, timeout=20)
        slow.request("GET", "/slow?ms=1500")
        a.wait_for_request("/slow")
        gw.config_path.write_text(pool + section)
        mark = len(gw.lines)
        gw.signal(signal.SIGHUP)
        gw.wait_for_new(r"tidegate: reloaded", mark)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=5).close()
        r = slow.getresponse()
        assert r.status == 200 and r.read() == b"a"
        slow.close()
        gw.wait_for_new(r"http\.1: stopped", mark, timeout=20)
        assert get(gw.address("http"), "/")[0] == 200
