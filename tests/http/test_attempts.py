"""The attempt loop as the gateway runs it: drain signal, retried statuses, figures, access log.

The full retry table, end to end, is tests/retry/'s; these check the gateway's own wiring.
"""

from __future__ import annotations

import http.client
import json
import re

from tidegate.balancing.state import State
from tidegate.testing.gateway import gateway_config as config


def request(gw, method: str = "GET", path: str = "/", body: bytes | None = None):
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_drain_signal_moves_the_instance_to_draining_and_retries_even_a_post(faults, gateway) -> None:
    draining = faults("drain", name="old")
    ok = faults("echo", name="new")
    gw = gateway(config([draining.address, ok.address]))
    pool = gw.pools["web"]
    status, headers, body = request(gw, "POST", "/order", b"pay once")
    assert status == 200 and json.loads(body)["bytes"] == 8
    assert headers["x-instance"] == "new"
    assert [s.path for s in draining.seen] == ["/order"]
    assert pool.get(draining.address).state is State.DRAINING
    assert len(ok.seen) == 1  # processed exactly once
    # no new request goes to the draining instance
    for _ in range(5):
        assert request(gw)[0] == 200
    assert len(draining.seen) == 1 and len(ok.seen) == 6
    figures = gw.counters()
    old, new = figures[draining.address], figures[ok.address]
    assert (old.failures, old.completed, old.active) == (1, 0, 0)
    assert (new.retries, new.completed, new.active) == (1, 6, 0)


def test_every_instance_draining_gives_503_without_the_drain_header(faults, gateway) -> None:
    a, b = faults("drain"), faults("drain")
    gw = gateway(config([a.address, b.address]))
    status, headers, _ = request(gw, "POST", "/x", b"data")
    assert status == 503 and "tidegate-draining" not in headers
    assert len(a.seen) == 1 and len(b.seen) == 1
    assert all(i.state is State.DRAINING for i in gw.pools["web"])
    # nothing eligible is left: the gateway answers itself
    assert request(gw)[0] == 502


def test_configured_status_is_retried_for_get_and_passed_through_for_post(faults, gateway) -> None:
    failing = faults("status", status=503, name="bad")
    ok = faults("echo", name="good")
    gw = gateway(config([failing.address, ok.address]))
    results = [request(gw, "GET", f"/g{i}") for i in range(4)]
    assert [s for s, _, _ in results] == [200] * 4
    assert all(h["x-instance"] == "good" for _, h, _ in results)
    posts = [request(gw, "POST", f"/p{i}", b"x") for i in range(4)]
    assert sorted(h["x-instance"] for _, h, _ in posts) == ["bad", "bad", "good", "good"]
    assert sorted(s for s, _, _ in posts) == [200, 200, 503, 503]


def test_access_log_records_each_request_with_its_tries(faults, gateway, tmp_path) -> None:
    failing = faults("close", name="closer")  # reads the request, closes without a byte
    ok = faults("echo", name="ok")
    log_path = tmp_path / "access.jsonl"
    gw = gateway(config([failing.address, ok.address], http={"access_log": str(log_path)}))
    assert request(gw, "GET", "/a")[0] == 200
    assert request(gw, "GET", "/b")[0] == 200
    # round robin starts each request at the closing instance: a GET is retried on the other,
    # a POST whose request went out on a fresh connection is not (it may have been processed)
    assert request(gw, "POST", "/c", b"12345")[0] == 502
    gw.stop()
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [e["path"] for e in entries] == ["/a", "/b", "/c"]
    first = entries[0]
    assert first["pool"] == "web" and first["method"] == "GET" and first["status"] == 200
    assert first["upstream"] == ok.address and first["bytes_out"] > 0
    assert first["upstream_status"] == 200 and first["http_version"] == "1.1"
    assert 0 <= first["upstream_ms"] <= first["duration_ms"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"]), first
    assert first["client"] == "127.0.0.1" and first["host"].startswith("127.0.0.1:"), first
    assert [e["tries"] for e in entries] == [2, 2, 1]
    # The gateway's own answer: no status from the instance.
    assert entries[2]["status"] == 502 and entries[2]["upstream"] == failing.address
    assert entries[2]["upstream_status"] is None
    assert entries[2]["bytes_in"] == 5
