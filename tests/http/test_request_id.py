"""Request ids through real sockets: taken from the client when sane or made, passed to the
instance, returned to the client (the gateway's own answers too), kept across retries, logged;
HTTP/1.1 on both lanes and HTTP/2."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import re
import socket
from pathlib import Path

import pytest

from tidegate.http.request_id import BLOCK, MAX_LENGTH, new_id, sane, take
from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.h2client import H2Client
from tidegate.testing.wait import until

MADE = re.compile(r"[0-9a-f]{32}")


def call(gw, path: str = "/", method: str = "GET", body: bytes | None = None, headers=None):
    """(status, the response's X-Request-Id, body)"""
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheader("X-Request-Id"), r.read()
    finally:
        c.close()


def raw(gw, data: bytes) -> bytes:
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# --- the pure parts -------------------------------------------------------------------------
def test_what_is_sane() -> None:
    assert sane(b"abc-123_x.y:z/=+") and sane(b"!" * MAX_LENGTH)
    for bad in (b"", b"a b", b"a\tb", b"\x7f", b"caf\xc3\xa9", b"x" * (MAX_LENGTH + 1), b"a\r\nb"):
        assert not sane(bad), bad


def test_made_ids_are_32_hex_and_differ() -> None:
    ids = [new_id() for _ in range(3 * BLOCK + 7)]  # across blocks
    assert all(MADE.fullmatch(i.decode()) for i in ids)
    assert len(set(ids)) == len(ids)


def _child_ids(q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put([new_id() for _ in range(3)])


def test_a_forked_process_makes_other_ids() -> None:
    new_id()  # the parent holds a block of drawn ids
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_ids, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
    mine = [new_id() for _ in range(3)]
    everything = [*got[0], *got[1], *mine]
    assert len(set(everything)) == 9  # a child does not hand out what the parent drew


def test_take_from_a_header_list() -> None:
    names, values = [b"host", b"x-request-id", b"accept"], [b"h", b"abc", b"*/*"]
    assert take(names, values, b"x-request-id") == b"abc"
    assert names == [b"host", b"accept", b"x-request-id"] and values == [b"h", b"*/*", b"abc"]
    names, values = [b"x-request-id", b"x-request-id"], [b"a b", b"second"]
    assert take(names, values, b"x-request-id") == b"second"  # the first sane one
    names, values = [b"x-request-id"], [b"bad id"]
    rid = take(names, values, b"x-request-id")
    assert MADE.fullmatch(rid.decode()) and names == [b"x-request-id"] and values == [rid]


# --- HTTP/1.1 -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST"])  # the fast lane, and the long way (a body)
def test_a_clients_id_goes_to_the_instance_and_back(faults, gateway, method: str) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    body = b"x" if method == "POST" else None
    status, rid, _ = call(gw, "/a", method, body, {"X-Request-Id": "client-id-1"})
    assert status == 200 and rid == "client-id-1"
    assert [s.request_id for s in inst.seen] == ["client-id-1"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_id_is_made_per_request_when_the_client_sends_none(faults, gateway, method: str) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    body = b"x" if method == "POST" else None
    got = [call(gw, f"/{i}", method, body) for i in range(5)]
    ids = [rid for _, rid, _ in got]
    assert all(status == 200 for status, _, _ in got)
    assert all(rid is not None and MADE.fullmatch(rid) for rid in ids)
    assert len(set(ids)) == 5
    assert [s.request_id for s in inst.seen] == ids  # the instance got the id the client got back


@pytest.mark.parametrize("bad", ["has space", "x" * (MAX_LENGTH + 1), "tab\there"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_insane_id_is_replaced_not_forwarded(faults, gateway, bad: str, method: str) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    body = b"x" if method == "POST" else None
    status, rid, _ = call(gw, "/", method, body, {"X-Request-Id": bad})
    assert status == 200 and rid is not None and MADE.fullmatch(rid)
    assert [s.request_id for s in inst.seen] == [rid]


def test_a_second_id_field_is_not_forwarded(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    out = raw(gw, b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: one\r\nx-request-id: two\r\nConnection: close\r\n\r\n")
    assert b"\r\nX-Request-Id: one\r\n" in out
    assert [s.request_id for s in inst.seen] == ["one"]


def test_a_retried_request_keeps_its_id_on_every_try(faults, gateway) -> None:
    dies = faults("close", name="dies")  # reads the request, closes without an answer
    ok = faults("echo", name="ok")
    gw = gateway(config([dies.address, ok.address]))
    ids = []
    for i in range(4):
        status, rid, body = call(gw, f"/r{i}")
        assert status == 200 and json.loads(body)["instance"] == "ok"
        ids.append(rid)
    assert dies.seen, "no request went to the failing instance first"
    tried_twice = [s.request_id for s in dies.seen]
    assert set(tried_twice) <= set(ids)
    assert [s.request_id for s in ok.seen] == ids


def test_the_gateways_own_answers_carry_the_id(faults, gateway) -> None:
    refused = faults("echo", listen=False)
    gw = gateway(config([refused.address], retry={"tries": 1}))
    status, rid, _ = call(gw, "/", headers={"X-Request-Id": "mine"})
    assert (status, rid) == (502, "mine")
    status, rid, _ = call(gw, "/")
    assert status == 502 and rid is not None and MADE.fullmatch(rid)
    # Refused while the head is read (a second Host): the answer still has an id.
    out = raw(gw, b"GET / HTTP/1.1\r\nX-Request-Id: early\r\nHost: a\r\nHost: b\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"\r\nX-Request-Id: early\r\n" in out
    out = raw(gw, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    head = out.split(b"\r\n\r\n")[0].decode()
    assert re.search(r"\r\nX-Request-Id: [0-9a-f]{32}\r\n", head + "\r\n"), head


def test_the_access_log_has_the_id(faults, gateway, tmp_path: Path) -> None:
    inst = faults("echo")
    log = tmp_path / "access.log"
    gw = gateway(config([inst.address], http={"access_log": str(log)}))
    _, given, _ = call(gw, "/given", headers={"X-Request-Id": "logged-1"})
    assert given == "logged-1"
    _, made, _ = call(gw, "/made")

    def lines() -> list[dict]:
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    until(lambda: len(lines()) == 2, timeout=10)
    assert {e["path"]: e["request_id"] for e in lines()} == {"/given": "logged-1", "/made": made}


def test_off_adds_nothing_and_passes_the_clients_field_as_any_other(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], http={"request_id_header": ""}))
    status, rid, _ = call(gw, "/")
    assert status == 200 and rid is None
    status, rid, _ = call(gw, "/", headers={"X-Request-Id": "as is"})
    assert status == 200 and rid is None  # the instance does not echo it; the gateway adds none
    assert [s.request_id for s in inst.seen] == [None, "as is"]


def test_another_field_name(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http={"request_id_header": "X-Trace-Id"}))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        c.request("GET", "/headers", headers={"X-Trace-Id": "t-1"})
        r = c.getresponse()
        seen = dict(json.loads(r.read())["headers"])
        assert r.getheader("X-Trace-Id") == "t-1" and r.getheader("X-Request-Id") is None
        assert seen["x-trace-id"] == "t-1" and "x-request-id" not in seen
    finally:
        c.close()


# --- HTTP/2 ---------------------------------------------------------------------------------
def test_http2_streams_take_make_return_and_replace_ids(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], http={"http2": True}))
    with H2Client(gw.host, gw.port) as c:
        given = c.request("GET", "/given", [("x-request-id", "h2-id")])
        made = c.request("GET", "/made")
        insane = c.request("POST", "/insane", [("x-request-id", "a b")], body=b"x")
    assert given.status == 200 and given.header(b"x-request-id") == b"h2-id"
    made_id = made.header(b"x-request-id")
    insane_id = insane.header(b"x-request-id")
    assert made_id is not None and MADE.fullmatch(made_id.decode())
    assert insane_id is not None and MADE.fullmatch(insane_id.decode()) and insane_id != made_id
    assert [s.request_id for s in inst.seen] == ["h2-id", made_id.decode(), insane_id.decode()]


def test_http2_own_answers_carry_the_id(faults, gateway) -> None:
    refused = faults("echo", listen=False)
    gw = gateway(config([refused.address], retry={"tries": 1}, http={"http2": True}))
    with H2Client(gw.host, gw.port) as c:
        a = c.request("GET", "/", [("x-request-id", "h2-own")])
        b = c.request("GET", "/")
    assert a.status == 502 and a.header(b"x-request-id") == b"h2-own"
    rid = b.header(b"x-request-id")
    assert b.status == 502 and rid is not None and MADE.fullmatch(rid.decode())
