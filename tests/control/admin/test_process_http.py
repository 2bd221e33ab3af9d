"""`tidegate run` with the HTTP gateway in front of real backends: the figures of /api/pools and
/metrics against what a load generator counted, draining through the API while a request is in
flight, `tidegate ctl`, and API-registered instances across SIGHUP."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httptools
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidegate.cli import main
from tidegate.testing.backends import Backend
from tidegate.testing.process import run_tidegate
from tidegate.testing.wait import until


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    made = [Backend("a"), Backend("b")]
    yield made
    for b in made:
        b.stop()


def config(backends: list[Backend]) -> str:
    instances = ", ".join(f'{{ address = "{b.address}" }}' for b in backends)
    return f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [ {instances} ]

[[http]]
listen = "127.0.0.1:0"
pool = "web"
"""


def admin_get(admin: tuple[str, int], path: str) -> Any:
    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}{path}", timeout=5) as r:
        body = r.read()
    return json.loads(body) if path.startswith("/api") else body.decode()


def admin_call(admin: tuple[str, int], method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{admin[0]}:{admin[1]}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


class _Done:
    def __init__(self) -> None:
        self.complete = False
        self.body = bytearray()

    def on_body(self, b: bytes) -> None:
        self.body += b

    def on_message_complete(self) -> None:
        self.complete = True


class Client:
    """A keep-alive HTTP/1.1 client on a raw socket that counts every byte both ways."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=10)
        self.sent = 0
        self.received = 0
        self.requests = 0

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
        data = head.encode() + body
        self.sock.sendall(data)
        self.sent += len(data)
        done = _Done()
        parser = httptools.HttpResponseParser(done)
        while not done.complete:
            chunk = self.sock.recv(256 * 1024)
            assert chunk, "connection closed mid-response"
            self.received += len(chunk)
            parser.feed_data(chunk)
        self.requests += 1
        return parser.get_status_code(), bytes(done.body)

    def close(self) -> None:
        self.sock.close()


def load(gateway: tuple[str, int], worker: int, n: int) -> tuple[int, int, int]:
    c = Client(gateway)
    try:
        for i in range(n):
            size = 8192 + ((worker * 7919 + i * 104729) % 16384)
            status, body = c.request("POST", "/echo", b"e" * size)
            assert status == 200 and len(body) == size
    finally:
        c.close()
    return c.requests, c.sent, c.received


def test_figures_agree_with_the_load_generator(start_tidegate, backends) -> None:
    proc = start_tidegate(config(backends))
    admin, gateway = proc.address("admin"), proc.address("http")
    workers, per_worker = 8, 100
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda w: load(gateway, w, per_worker), range(workers)))
    elapsed = time.monotonic() - t0
    n = sum(r[0] for r in results)
    sent = sum(r[1] for r in results)
    received = sum(r[2] for r in results)
    assert n == workers * per_worker

    doc = admin_get(admin, "/api/pools")
    totals = doc["pools"][0]["totals"]
    inst = doc["pools"][0]["instances"]
    assert abs(totals["requests"] - n) <= 0.02 * n
    assert abs(totals["bytes_in"] - sent) <= 0.02 * sent
    assert abs(totals["bytes_out"] - received) <= 0.02 * received
    assert totals["connections"] == 0 and totals["failures"] == 0
    assert sum(i["requests"] for i in inst) == totals["requests"]
    assert all(i["requests"] >= n / 4 for i in inst)  # both took work
    # IOPS: the run is shorter than the 10 s window, so the rate spans it whole: at least n over
    # the test's own span (the meter's span is within it; no upper bound that a loaded box breaks)
    assert totals["iops"] >= n / (time.monotonic() - t0 + 1.0) * 0.8

    metrics: dict[str, float] = {}
    for fam in text_string_to_metric_families(admin_get(admin, "/metrics")):
        for s in fam.samples:
            if s.labels.get("pool") == "web" and "le" not in s.labels:
                metrics[s.name] = metrics.get(s.name, 0) + s.value
    assert abs(metrics["tidegate_instance_requests_total"] - n) <= 0.02 * n
    assert abs(metrics["tidegate_instance_bytes_in_total"] - sent) <= 0.02 * sent
    assert abs(metrics["tidegate_instance_bytes_out_total"] - received) <= 0.02 * received
    assert metrics["tidegate_instance_response_seconds_count"] == totals["requests"]
    print(
        f"\nload generator: {n} requests, {sent} B sent, {received} B received in {elapsed:.2f}s"
        f"\n/api/pools:     {totals['requests']} requests, {totals['bytes_in']} B in, "
        f"{totals['bytes_out']} B out, iops {totals['iops']}"
        f"\n/metrics:       {metrics['tidegate_instance_requests_total']:.0f} requests, "
        f"{metrics['tidegate_instance_bytes_in_total']:.0f} B in, "
        f"{metrics['tidegate_instance_bytes_out_total']:.0f} B out"
        f"\nbytes in off by {100 * (totals['bytes_in'] - sent) / sent:+.2f}%, "
        f"out by {100 * (totals['bytes_out'] - received) / received:+.2f}%"
    )

    # tidegate ctl status shows the same live figures
    host, port = admin
    out = run_tidegate("ctl", "--admin", f"http://{host}:{port}", "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for i in admin_get(admin, "/api/pools")["pools"][0]["instances"]:
        row = next(line for line in lines if i["address"] in line)
        assert "web" in row and "up" in row and f" {i['requests']} " in row
    for column in ("pool", "instance", "state", "weight", "conns", "iops", "in", "out", "failures"):
        assert column in lines[1] + lines[2] + lines[3]
    js = run_tidegate("ctl", "--admin", f"{host}:{port}", "status", "--json")
    assert json.loads(js.stdout)["pools"][0]["totals"]["requests"] == totals["requests"]


def test_drain_stops_new_requests_while_in_flight_ones_complete(start_tidegate, backends) -> None:
    proc = start_tidegate(config(backends))
    admin, gateway = proc.address("admin"), proc.address("http")
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        c = Client(gateway)
        slow["result"] = c.request("GET", "/slow?ms=1500")
        c.close()

    t = threading.Thread(target=slow_request)
    t.start()
    busy: list[dict[str, Any]] = []

    def in_flight() -> bool:
        busy[:] = [i for i in admin_get(admin, "/api/pools")["pools"][0]["instances"] if i["connections"]]
        return len(busy) == 1

    until(in_flight)
    target = busy[0]["address"]
    name = next(b.name for b in backends if b.address == target)
    r = admin_call(admin, "POST", f"/api/pools/web/instances/{target}/drain")
    assert r["state"] == "draining" and r["connections"] == 1

    c = Client(gateway)
    answered_by = [c.request("GET", "/")[1].decode() for _ in range(30)]
    c.close()
    assert name not in answered_by and len(set(answered_by)) == 1
    assert t.is_alive()  # the slow one is still in flight on the drained instance ...
    t.join(10)
    assert slow["result"] == (200, name.encode())  # ... and completes there
    drained = admin_get(admin, f"/api/pools/web/instances/{target}")
    assert drained["connections"] == 0 and drained["requests"] == 1 and drained["state"] == "draining"

    # enable: the next requests reach it again
    admin_call(admin, "POST", f"/api/pools/web/instances/{target}/enable")
    c = Client(gateway)
    assert name in {c.request("GET", "/")[1].decode() for _ in range(4)}
    c.close()


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_ctl_calls_and_errors(start_tidegate, backends, capsys) -> None:
    a, b = backends
    proc = start_tidegate(config(backends[:1]))
    host, port = proc.address("admin")
    url = f"http://{host}:{port}"

    def ctl(*args: str) -> Ran:
        # in this process (a python start per call is slow); `status` runs as a process above
        code = main(["ctl", "--admin", url, *args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    r = ctl("add", "web", b.address, "--weight", "3", "--meta", "supervisor=http://127.0.0.1:1")
    assert r.returncode == 0 and f"added web {b.address}: up, weight 3" in r.stdout
    assert ctl("drain", "web", a.address).stdout.startswith(f"web {a.address}: draining")
    assert "maint" in ctl("maint", "web", a.address).stdout
    assert ": up" in ctl("enable", "web", a.address).stdout
    assert "weight 7" in ctl("weight", "web", a.address, "7").stdout
    bad = ctl("weight", "web", a.address, "-2")
    assert bad.returncode == 1 and "400" in bad.stderr and ">= 0" in bad.stderr
    bad = ctl("drain", "nope", a.address)
    assert bad.returncode == 1 and "404" in bad.stderr and "no pool 'nope'" in bad.stderr
    bad = ctl("add", "web", "not-an-address")
    assert bad.returncode == 1 and "bad address" in bad.stderr
    unreachable = Ran(main(["ctl", "--admin", "http://127.0.0.1:1", "status"]), "", capsys.readouterr().err)
    assert unreachable.returncode == 2 and "unreachable" in unreachable.stderr
    doc = admin_get((host, port), "/api/pools")["pools"][0]["instances"]
    assert [(i["address"], i["weight"], i["state"], i["origin"], i["meta"]) for i in doc] == [
        (a.address, 7, "up", "config", {}),
        (b.address, 3, "up", "api", {"supervisor": "http://127.0.0.1:1"}),
    ]
    r = ctl("remove", "web", b.address)
    assert r.returncode == 0 and r.stdout.startswith("removed web")


def test_registered_instances_survive_sighup(start_tidegate, backends) -> None:
    a, b = backends
    proc = start_tidegate(config(backends[:1]))
    admin = proc.address("admin")
    admin_call(admin, "POST", "/api/pools/web/instances", {"address": b.address, "meta": {"k": "v"}})
    admin_call(admin, "POST", f"/api/pools/web/instances/{a.address}/maint")
    proc.signal(signal.SIGHUP)
    proc.wait_for("tidegate: reloaded")
    doc = admin_get(admin, "/api/pools")["pools"][0]["instances"]
    assert [(i["address"], i["state"], i["origin"], i["meta"]) for i in doc] == [
        (a.address, "maint", "config", {}),
        (b.address, "up", "api", {"k": "v"}),
    ]
    # once the file lists b itself, b is the file's
    proc.config_path.write_text(config(backends))
    before = len([line for line in proc.lines if "tidegate: reloaded" in line])
    proc.signal(signal.SIGHUP)
    until(lambda: len([line for line in proc.lines if "tidegate: reloaded" in line]) > before)
    doc = admin_get(admin, "/api/pools")["pools"][0]["instances"]
    assert [i["origin"] for i in doc] == ["config", "config"]


def test_sighup_with_a_new_admin_listen_address_moves_the_admin_api(start_tidegate, tmp_path) -> None:
    import http.client as hc
    import signal as sig

    pool = '[[pools]]\nname = "web"\ninstances = [{ address = "127.0.0.1:9" }]\n'
    proc = start_tidegate('[admin]\nlisten = "127.0.0.1:0"\n' + pool)
    proc.config_path.write_text('[admin]\nlisten = "127.0.0.6:0"\n' + pool)
    mark = len(proc.lines)
    proc.signal(sig.SIGHUP)
    moved = proc.wait_for_new(r"tidegate: admin listening on 127\.0\.0\.6:(\d+)", mark, timeout=10)
    proc.wait_for_new(r"tidegate: reloaded", mark)
    conn = hc.HTTPConnection("127.0.0.6", int(moved.group(1)), timeout=10)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    assert r.status == 200 and 'tidegate_instance_requests_total{instance="127.0.0.1:9"' in body, body[:2000]
