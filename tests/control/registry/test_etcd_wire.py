"""Reading and writing etcd's JSON gateway (control/registry/etcd_wire.py), with answers etcd 3.4 gave."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.control.registry.etcd_wire import (
    KeyValue,
    WatchMessage,
    WireError,
    b64,
    parse_grant,
    parse_keepalive,
    parse_range,
    parse_watch,
    prefix_end,
    put_body,
    range_prefix_body,
    unb64,
    watch_body,
)

HEADER = {"cluster_id": "1511", "member_id": "1366", "revision": "2", "raft_term": "2"}


def test_prefix_end() -> None:
    assert prefix_end(b"/tidegate/") == b"/tidegate0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") == b"\x00"
    assert prefix_end(b"") == b"\x00"


@given(prefix=st.binary(min_size=1, max_size=8), rest=st.binary(max_size=8))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes, rest: bytes) -> None:
    end = prefix_end(prefix)
    if end != b"\x00":
        assert prefix <= prefix + rest < end


def test_request_bodies() -> None:
    assert range_prefix_body("/t/") == {"key": b64("/t/"), "range_end": b64("/t0")}
    assert put_body("k", b"v") == {"key": "aw==", "value": "dg=="}
    assert put_body("k", b"v", lease=42)["lease"] == "42"
    assert watch_body("/t/", 7) == {
        "create_request": {"key": b64("/t/"), "range_end": b64("/t0"), "start_revision": "7"}
    }


def test_range_answer() -> None:
    doc = {
        "header": HEADER,
        "kvs": [
            {
                "key": "L3RpZGVnYXRlL2E=",
                "create_revision": "2",
                "mod_revision": "2",
                "version": "1",
                "value": "aGVsbG8=",
            }
        ],
        "count": "1",
    }
    assert parse_range(doc) == (2, [KeyValue("/tidegate/a", 2, b"hello")])
    assert parse_range({"header": HEADER}) == (2, [])  # nothing found: no "kvs" at all


def test_an_empty_value_is_left_out_by_the_gateway() -> None:
    doc = {"header": HEADER, "kvs": [{"key": b64("k"), "mod_revision": "5"}]}
    assert parse_range(doc)[1] == [KeyValue("k", 5, b"")]


def test_lease_answers() -> None:
    assert parse_grant({"header": HEADER, "ID": "4111120237696506888", "TTL": "5"}) == (
        4111120237696506888,
        5,
    )
    assert parse_keepalive({"result": {"header": HEADER, "ID": "41", "TTL": "5"}}) == 5
    assert parse_keepalive({"result": {"header": HEADER, "ID": "41"}}) == 0  # revoked or expired
    with pytest.raises(WireError):
        parse_grant({"header": HEADER, "TTL": "5"})


def test_watch_messages() -> None:
    created = {"result": {"header": HEADER, "created": True}}
    assert parse_watch(created) == WatchMessage(revision=2, created=True)
    put = {
        "result": {
            "header": HEADER,
            "events": [{"kv": {"key": b64("/t/a"), "mod_revision": "2", "value": b64("x")}}],
        }
    }
    assert parse_watch(put).events == (KeyValue("/t/a", 2, b"x"),)
    deleted = {
        "result": {
            "header": {**HEADER, "revision": "3"},
            "events": [{"type": "DELETE", "kv": {"key": b64("/t/a"), "mod_revision": "3"}}],
        }
    }
    assert parse_watch(deleted) == WatchMessage(revision=3, events=(KeyValue("/t/a", 3, None),))
    compacted = {"result": {"header": {"raft_term": "2"}, "canceled": True, "compact_revision": "3"}}
    assert parse_watch(compacted) == WatchMessage(revision=0, canceled=True, compact_revision=3)


@pytest.mark.parametrize(
    "doc",
    [
        {"error": "etcdserver: mvcc: required revision has been compacted", "code": 11},
        {
            "error": "etcdserver: requested lease not found",
            "message": "etcdserver: requested lease not found",
            "code": 5,
        },
        {"result": {"header": HEADER, "events": [{"type": "BOGUS", "kv": {"key": "YQ=="}}]}},
        {"result": {"header": HEADER, "events": {}}},
        {"result": {"header": {"revision": "x"}}},
        {"result": {"header": HEADER, "events": [{"kv": {"key": "not base64!"}}]}},
        ["not", "an", "object"],
        {"result": None},
    ],
)
def test_broken_watch_answers_raise(doc: object) -> None:
    with pytest.raises(WireError):
        parse_watch(doc)


def test_base64() -> None:
    assert unb64(b64(b"\x00\xff")) == b"\x00\xff"
    for bad in ("***", None, 3):
        with pytest.raises(WireError):
            unb64(bad)
