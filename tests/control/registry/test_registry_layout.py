"""Key layout and record encoding of the etcd registry (control/registry/layout.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.control.registry.layout import (
    HOLDS,
    INSTANCES,
    PROCESSES,
    WEIGHTS,
    Key,
    RecordError,
    Registration,
    decode_hold,
    decode_registration,
    decode_weight,
    encode_hold,
    encode_registration,
    encode_weight,
    hold_key,
    instance_key,
    parse_etcd_url,
    parse_key,
    process_key,
    weight_key,
)

P = "/tidegate/"


def test_keys_are_the_documented_layout() -> None:
    assert instance_key(P, "web", "127.0.0.1:9001") == "/tidegate/instances/web/127.0.0.1:9001"
    assert hold_key(P, "web", "[::1]:9001") == "/tidegate/holds/web/[::1]:9001"
    assert weight_key(P, "web", "a/b:1") == "/tidegate/weights/web/a%2Fb:1"
    assert process_key(P, "host:123") == "/tidegate/processes/host:123"


@given(
    kind=st.sampled_from([INSTANCES, HOLDS, WEIGHTS]),
    pool=st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True),
    address=st.text(min_size=1, max_size=30),
)
def test_pool_keys_round_trip(kind: str, pool: str, address: str) -> None:
    key = {INSTANCES: instance_key, HOLDS: hold_key, WEIGHTS: weight_key}[kind](P, pool, address)
    assert parse_key(P, key) == Key(kind, pool, address)


@given(name=st.text(min_size=1, max_size=30))
def test_process_keys_round_trip(name: str) -> None:
    assert parse_key(P, process_key(P, name)) == Key(PROCESSES, "", name)


@pytest.mark.parametrize(
    "key",
    [
        "/other/instances/web/a:1",
        "/tidegate/instances/web",
        "/tidegate/instances/web/",
        "/tidegate/instances//a:1",
        "/tidegate/instances/web/a:1/extra",
        "/tidegate/unknown/web/a:1",
        "/tidegate/processes/",
        "/tidegate/processes/a/b",
        "/tidegate/",
    ],
)
def test_keys_outside_the_layout_are_refused(key: str) -> None:
    with pytest.raises(RecordError):
        parse_key(P, key)


def test_bad_pool_names_cannot_make_keys() -> None:
    for pool in ("", "a/b"):
        with pytest.raises(ValueError):
            instance_key(P, pool, "a:1")


@given(
    weight=st.integers(0, 1_000_000),
    meta=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
)
def test_registration_round_trip(weight: int, meta: dict[str, str]) -> None:
    reg = Registration(weight, meta)
    assert decode_registration(encode_registration(reg)) == reg


def test_registration_defaults() -> None:
    assert decode_registration(b"{}") == Registration(1, {})


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"[]",
        b"nope",
        b'{"weight": -1}',
        b'{"weight": true}',
        b'{"weight": 1.5}',
        b'{"meta": {"a": 1}}',
        b'{"meta": []}',
        b'{"weight": 1000001}',
        b"\xff",
    ],
)
def test_bad_registrations_are_refused(value: bytes) -> None:
    with pytest.raises(RecordError):
        decode_registration(value)


def test_holds_and_weights_round_trip() -> None:
    assert decode_hold(encode_hold("drain")) == "drain"
    assert decode_hold(encode_hold("maint")) == "maint"
    assert decode_weight(encode_weight(7)) == 7
    for bad in (b'{"hold": "up"}', b"{}", b'"drain"'):
        with pytest.raises(RecordError):
            decode_hold(bad)
    for bad in (b"{}", b'{"weight": "3"}', b"3"):
        with pytest.raises(RecordError):
            decode_weight(bad)


@pytest.mark.parametrize(
    ("url", "endpoints", "prefix"),
    [
        ("etcd://127.0.0.1:2379", ["http://127.0.0.1:2379"], "/tidegate/"),
        ("etcd://127.0.0.1:2379/", ["http://127.0.0.1:2379"], "/tidegate/"),
        ("etcd://127.0.0.1:2379/tg/prod", ["http://127.0.0.1:2379"], "/tg/prod/"),
        ("etcd://a:1,b:2/tg/", ["http://a:1", "http://b:2"], "/tg/"),
    ],
)
def test_etcd_urls(url: str, endpoints: list[str], prefix: str) -> None:
    assert parse_etcd_url(url) == (endpoints, prefix)


@pytest.mark.parametrize(
    "url", ["http://a:1/", "etcd://", "etcd:///tg/", "etcd://a/tg/", "etcd://a:1/x//y/", "etcd://a:1,/"]
)
def test_bad_etcd_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_etcd_url(url)
