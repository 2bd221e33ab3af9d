"""What the etcd registry keeps under its prefix, and how each value is written.

Theory of operation
-------------------
One key per fact, so that no writer ever reads-modifies-writes another's record (etcd is the
only arbiter; tidegate adds no consensus of its own):

    PREFIX instances/POOL/ADDRESS   {"weight": 1, "meta": {"supervisor": URL}}   registration
    PREFIX holds/POOL/ADDRESS       {"hold": "drain"} or {"hold": "maint"}        operator hold
    PREFIX weights/POOL/ADDRESS     {"weight": 3}                                 operator weight
    PREFIX processes/NAME           {"admin": URL, "pid": 123}                    a live tidegate

A registration made by `tidegate serve --register etcd://…` lives under the supervisor's lease
and vanishes with it; one made through an admin API has no lease (it is removed by DELETE). An
operator's hold and weight outlive registrations: an instance that restarts and registers again
stays in `maint` until an operator enables it. `enable` deletes the hold key. Process records
live under each tidegate's own lease: who shares the registry right now.

ADDRESS is percent-encoded (only "/" and "%" need it in practice), so a key splits on "/".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote

from tidegate.config.model import etcd_endpoint, etcd_prefix

INSTANCES = "instances"
HOLDS = "holds"
WEIGHTS = "weights"
PROCESSES = "processes"
_POOL_KINDS = (INSTANCES, HOLDS, WEIGHTS)

Hold = Literal["drain", "maint"]
HOLDS_KNOWN: tuple[Hold, ...] = ("drain", "maint")
MAX_WEIGHT = 1_000_000


class RecordError(ValueError):
    """A key or value under the prefix that tidegate did not write (or a newer one did)."""


@dataclass(frozen=True, slots=True)
class Key:
    kind: str  # INSTANCES, HOLDS, WEIGHTS or PROCESSES
    pool: str  # "" for PROCESSES
    name: str  # the instance's address, or the process's name


@dataclass(frozen=True, slots=True)
class Registration:
    weight: int = 1
    meta: dict[str, str] = field(default_factory=dict)


def _part(text: str) -> str:
    return quote(text, safe=":[]@-._~")


def pool_key(prefix: str, kind: str, pool: str, address: str) -> str:
    if kind not in _POOL_KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if not pool or "/" in pool:
        raise ValueError(f"bad pool name {pool!r}")
    return f"{prefix}{kind}/{pool}/{_part(address)}"


def instance_key(prefix: str, pool: str, address: str) -> str:
    return pool_key(prefix, INSTANCES, pool, address)


def hold_key(prefix: str, pool: str, address: str) -> str:
    return pool_key(prefix, HOLDS, pool, address)


def weight_key(prefix: str, pool: str, address: str) -> str:
    return pool_key(prefix, WEIGHTS, pool, address)


def process_key(prefix: str, name: str) -> str:
    return f"{prefix}{PROCESSES}/{_part(name)}"


def parse_key(prefix: str, key: str) -> Key:
    """The fact a key holds; RecordError for keys under the prefix this layout does not know."""
    if not key.startswith(prefix):
        raise RecordError(f"{key!r} is not under {prefix!r}")
    parts = key[len(prefix) :].split("/")
    if len(parts) == 2 and parts[0] == PROCESSES and parts[1]:
        return Key(PROCESSES, "", unquote(parts[1]))
    if len(parts) == 3 and parts[0] in _POOL_KINDS and parts[1] and parts[2]:
        return Key(parts[0], parts[1], unquote(parts[2]))
    raise RecordError(f"{key!r}: not a key of the tidegate registry layout")


def _object(value: bytes) -> dict[str, object]:
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RecordError("not a JSON object")
    return doc


def _weight(doc: dict[str, object], default: int | None = None) -> int:
    w = doc.get("weight", default)
    if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= MAX_WEIGHT:
        raise RecordError(f"weight must be an integer from 0 to {MAX_WEIGHT}, not {w!r}")
    return w


# --- values -------------------------------------------------------------------------------
def encode_registration(reg: Registration) -> bytes:
    return json.dumps({"weight": reg.weight, "meta": reg.meta}, sort_keys=True).encode()


def decode_registration(value: bytes) -> Registration:
    doc = _object(value)
    meta = doc.get("meta", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise RecordError("meta must be an object of strings")
    return Registration(_weight(doc, 1), dict(meta))


def encode_hold(hold: Hold) -> bytes:
    return json.dumps({"hold": hold}).encode()


def decode_hold(value: bytes) -> Hold:
    hold = _object(value).get("hold")
    if hold == "drain":
        return "drain"
    if hold == "maint":
        return "maint"
    raise RecordError(f"hold must be one of {', '.join(HOLDS_KNOWN)}, not {hold!r}")


def encode_weight(weight: int) -> bytes:
    return json.dumps({"weight": weight}).encode()


def decode_weight(value: bytes) -> int:
    return _weight(_object(value))


def encode_process(admin: str | None, pid: int) -> bytes:
    return json.dumps({"admin": admin, "pid": pid}, sort_keys=True).encode()


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """(endpoints, prefix) from `etcd://HOST:PORT[,HOST:PORT…][/PREFIX/]` (the `--register`
    form of `tidegate serve`); the prefix defaults to the config file's, /tidegate/."""
    if not url.startswith("etcd://"):
        raise ValueError(f"{url!r}: expected etcd://HOST:PORT/PREFIX/")
    hosts, slash, path = url[len("etcd://") :].partition("/")
    if not hosts:
        raise ValueError(f"{url!r}: no etcd host, e.g. etcd://127.0.0.1:2379/tidegate/")
    endpoints = [etcd_endpoint(h) for h in hosts.split(",")]
    prefix = "/" + path if slash and path else "/tidegate/"
    if not prefix.endswith("/"):
        prefix += "/"
    return endpoints, etcd_prefix(prefix)
