"""HTTP/2 from clients through real sockets: curl, h2load and a client on the h2 library, with
the same routing, retry table, body store and drain signal as HTTP/1.1."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import subprocess
import threading

from h2.errors import ErrorCodes

from tidegate.balancing.state import State
from tidegate.testing.certs import make_pair
from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.h2client import H2Client

H2 = {"http2": True}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-m", "20", *args], capture_output=True, text=True, timeout=30)


def test_curl_with_prior_knowledge_gets_the_same_forwarding_as_http11(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    url = f"http://{gw.host}:{gw.port}"
    r = curl("--http2-prior-knowledge", "-i", "-H", "Cookie: a=1", "-H", "Cookie: b=2", url + "/headers?q=1")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/2 200")
    seen = json.loads(body)
    h = {k: v for k, v in seen["headers"]}
    assert seen["query"] == "q=1" and seen["http_version"] == "1.1"
    assert h["host"] == f"{gw.host}:{gw.port}"
    assert h["x-forwarded-proto"] == "http" and h["via"] == "2 tidegate"
    assert h["cookie"] == "a=1; b=2"
    # the same listener still serves HTTP/1.1
    r1 = curl("-i", url + "/headers")
    assert r1.stdout.startswith("HTTP/1.1 200")


def test_bodies_both_ways_and_head(backends, gateway, tmp_path) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    url = f"http://{gw.host}:{gw.port}"
    for path, size in (("/bytes/300000", 300000), ("/chunked/200000", 200000)):
        r = curl("--http2-prior-knowledge", "-o", str(tmp_path / "out"), "-w", "%{http_code} %{http_version}", url + path)
        assert r.stdout == "200 2" and (tmp_path / "out").read_bytes() == b"x" * size
    payload = bytes(range(256)) * 3000
    (tmp_path / "up").write_bytes(payload)
    r = curl("--http2-prior-knowledge", "--data-binary", f"@{tmp_path / 'up'}", url + "/sha256")
    assert r.stdout.split() == [hashlib.sha256(payload).hexdigest(), str(len(payload))]
    r = curl("--http2-prior-knowledge", "-I", url + "/bytes/10")
    assert r.stdout.startswith("HTTP/2 200") and "content-length: 10" in r.stdout


def test_h2load_many_streams_on_few_connections(backends, gateway) -> None:
    bs = backends("a", "b")
    gw = gateway(config([x.address for x in bs], http=H2))
    r = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", f"http://{gw.host}:{gw.port}/"],
        capture_output=True, text=True, timeout=120,
    )
    assert "Application protocol: h2c" in r.stdout, r.stdout + r.stderr
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded", r.stdout), r.stdout
    figures = gw.counters()
    assert sum(c.completed for c in figures.values()) == 2000
    assert all(c.active == 0 for c in figures.values())


def test_a_dying_instance_is_retried_per_the_table(faults, gateway) -> None:
    dies = faults("head-only", name="dies")  # the head of a short body, then closed: nothing shown
    ok = faults("echo", name="ok")
    gw = gateway(config([dies.address, ok.address], http=H2))
    with H2Client(gw.host, gw.port) as c:
        answers = [c.wait(sid) for sid in [c.start("GET", f"/g{i}") for i in range(4)]]
    assert [a.status for a in answers] == [200] * 4
    assert all(a.header(b"x-instance") == b"ok" for a in answers)
    assert gw.counters()[ok.address].retries >= 1


def test_a_response_cut_after_bytes_went_out_resets_only_its_stream(faults, gateway) -> None:
    cut = faults("reset", name="cut")
    gw = gateway(config([cut.address], http=H2))
    with H2Client(gw.host, gw.port) as c:
        a = c.request("GET", "/x")
        assert a.reset is not None and not a.ended
        cut.mode = cut.mode.__class__("echo")
        again = c.request("GET", "/y")  # the connection goes on
        assert again.status == 200


def test_drain_signal_over_h2_retries_even_a_post(faults, gateway) -> None:
    draining = faults("drain", name="old")
    ok = faults("echo", name="new")
    gw = gateway(config([draining.address, ok.address], http=H2))
    with H2Client(gw.host, gw.port) as c:
        a = c.request("POST", "/order", body=b"pay once")
    assert a.status == 200 and json.loads(a.body)["bytes"] == 8
    assert a.header(b"x-instance") == b"new"
    assert gw.pools["web"].get(draining.address).state is State.DRAINING
    assert len(ok.seen) == 1


def test_uploads_past_the_memory_threshold_go_to_the_spool(backends, gateway, tmp_path) -> None:
    (b,) = backends("a")
    limits = {"body_in_memory": "64KiB", "spool_dir": str(tmp_path / "spool")}
    (tmp_path / "spool").mkdir()
    gw = gateway(config([b.address], http=H2, limits=limits))
    big = bytes(range(256)) * 8000  # 2 MB
    with H2Client(gw.host, gw.port) as c:
        a = c.request("POST", "/sha256", body=big)
        assert a.status == 200 and a.body.split() == [hashlib.sha256(big).hexdigest().encode(), b"2048000"]
    # An unwritable spool: a small body stays in memory and passes, a big one gets 507.
    gw2 = gateway(config([b.address], http=H2, limits={**limits, "spool_dir": str(tmp_path / "missing")}))
    with H2Client(gw2.host, gw2.port) as c:
        assert c.request("POST", "/sha256", body=b"s" * 1000).status == 200
        assert c.request("POST", "/sha256", body=big).status == 507
        assert c.request("GET", "/").status == 200


def test_an_oversized_declared_body_is_refused_before_the_instance(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2, limits={"max_body_bytes": "1KiB"}))
    with H2Client(gw.host, gw.port) as c:
        sid = c.start("POST", "/echo", headers=[("content-length", "5000")], body=None, end=False)
        a = c.wait(sid)
        assert a.status == 413
        assert c.request("GET", "/").status == 200


def test_http11_listener_without_http2_does_not_take_the_preface(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    c.request("GET", "/")
    assert c.getresponse().status == 200
    c.close()
    r = curl("--http2-prior-knowledge", f"http://{gw.host}:{gw.port}/")
    assert r.returncode != 0


def test_h2_by_alpn_over_tls(backends, gateway, tmp_path) -> None:
    (b,) = backends("a")
    cert, key, _ = make_pair(tmp_path, "a", ["a.test"])
    gw = gateway(config([b.address], http={"tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}))
    url = f"https://a.test:{gw.port}"
    resolve = f"a.test:{gw.port}:{gw.host}"
    r = curl("--http2", "-k", "--resolve", resolve, "-i", url + "/headers")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/2 200")
    h = dict(json.loads(body)["headers"])
    assert h["x-forwarded-proto"] == "https" and h["via"] == "2 tidegate"
    # a client that offers only HTTP/1.1 gets it on the same listener
    r1 = curl("--http1.1", "-k", "--resolve", resolve, "-i", url + "/")
    assert r1.stdout.startswith("HTTP/1.1 200")
    load = subprocess.run(
        ["h2load", "-n", "500", "-c", "2", "-m", "10", f"https://{gw.host}:{gw.port}/"],  # no SNI: the first pair
        capture_output=True, text=True, timeout=120,
    )
    assert "Application protocol: h2" in load.stdout, load.stdout + load.stderr
    assert "500 succeeded" in load.stdout, load.stdout


def test_graceful_stop_sends_goaway_and_finishes_open_streams(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    with H2Client(gw.host, gw.port, timeout=30) as c:
        first = c.start("GET", "/slow?ms=3000")
        b.wait_for_request("/slow")
        stopping = threading.Thread(target=gw.stop, kwargs={"grace": 20.0})
        stopping.start()
        goaway = c.wait_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == first
        late = c.start("GET", "/")  # after the GOAWAY: refused, safe to retry elsewhere
        assert c.wait(late).reset == ErrorCodes.REFUSED_STREAM
        a = c.wait(first)
        assert a.status == 200 and a.ended and a.body == b"a"
        c.wait_closed()  # once its streams are answered the connection closes
        stopping.join(30)
        assert not stopping.is_alive()
