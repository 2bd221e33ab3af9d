"""etcd v3's JSON gateway, as bodies to send and answers to read (no I/O).

The gateway (grpc-gateway in front of etcd's gRPC API, served on the client port at /v3/…) writes
keys and values as base64, 64-bit integers as decimal strings, and leaves out fields at their
zero value: an event without "type" is a PUT, a keep-alive answer without "TTL" means the lease
is gone, a range answer without "kvs" found nothing. A watch answers with one JSON document per
line, each {"result": WatchResponse} (or {"error": …} when the stream broke).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class WireError(ValueError):
    """An answer that is not what the gateway writes."""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise WireError(f"expected base64 text, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise WireError(f"bad base64 {text!r}: {exc}") from None


def int64(value: Any, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WireError(f"expected an int64, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise WireError(f"expected an int64, got {value!r}") from None


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix": the prefix with its last byte
    that is not 0xff incremented, and what follows dropped."""
    raw = bytearray(prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\x00"  # every key


# --- requests -----------------------------------------------------------------------------
def range_prefix_body(prefix: str) -> dict[str, str]:
    return {"key": b64(prefix), "range_end": b64(prefix_end(prefix.encode()))}


def put_body(key: str, value: bytes, lease: int = 0) -> dict[str, str]:
    body = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return body


def delete_body(key: str) -> dict[str, str]:
    return {"key": b64(key)}


def watch_body(prefix: str, start_revision: int) -> dict[str, Any]:
    create = range_prefix_body(prefix)
    return {"create_request": {**create, "start_revision": str(start_revision)}}


# --- answers ------------------------------------------------------------------------------
def _object(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise WireError(f"{what}: expected a JSON object, got {doc!r}")
    if "error" in doc or ("code" in doc and "message" in doc):
        raise WireError(f"{what}: etcd says {doc.get('message') or doc.get('error')!r}")
    return doc


def revision_of(doc: Any) -> int:
    """The store revision an answer was made at (its header)."""
    header = _object(doc, "answer").get("header", {})
    return int64(_object(header, "header").get("revision"))


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    mod_revision: int
    value: bytes | None  # None: deleted


def _key_value(kv: Any, deleted: bool = False) -> KeyValue:
    kv = _object(kv, "kv")
    key = unb64(kv.get("key")).decode("utf-8", "replace")
    value = None if deleted else unb64(kv.get("value", ""))
    return KeyValue(key, int64(kv.get("mod_revision")), value)


def parse_range(doc: Any) -> tuple[int, list[KeyValue]]:
    """(revision, keys) of a /v3/kv/range answer."""
    doc = _object(doc, "range")
    kvs = doc.get("kvs", [])
    if not isinstance(kvs, list):
        raise WireError(f"range: kvs is not a list: {kvs!r}")
    return revision_of(doc), [_key_value(kv) for kv in kvs]


def parse_grant(doc: Any) -> tuple[int, int]:
    """(lease id, granted TTL) of a /v3/lease/grant answer."""
    doc = _object(doc, "lease grant")
    lease = int64(doc.get("ID"))
    if lease == 0:
        raise WireError(f"lease grant: no ID in {doc!r}")
    return lease, int64(doc.get("TTL"))


def parse_keepalive(doc: Any) -> int:
    """The TTL left after a /v3/lease/keepalive; 0 when the lease is gone (expired, revoked)."""
    result = _object(_object(doc, "keepalive").get("result", {}), "keepalive result")
    return int64(result.get("TTL"))


@dataclass(frozen=True, slots=True)
class WatchMessage:
    revision: int
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0  # set when the start revision was compacted away: resync
    reason: str = ""
    events: tuple[KeyValue, ...] = ()


def parse_watch(doc: Any) -> WatchMessage:
    result = _object(_object(doc, "watch").get("result"), "watch result")
    events = result.get("events", [])
    if not isinstance(events, list):
        raise WireError(f"watch: events is not a list: {events!r}")
    parsed = []
    for ev in events:
        ev = _object(ev, "event")
        kind = ev.get("type", "PUT")
        if kind not in ("PUT", "DELETE"):
            raise WireError(f"watch: unknown event type {kind!r}")
        parsed.append(_key_value(ev.get("kv"), deleted=kind == "DELETE"))
    return WatchMessage(
        revision=revision_of(result),
        created=bool(result.get("created", False)),
        canceled=bool(result.get("canceled", False)),
        compact_revision=int64(result.get("compact_revision")),
        reason=str(result.get("cancel_reason", "")),
        events=tuple(parsed),
    )
