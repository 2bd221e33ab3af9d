"""The operator's calls on pools and instances, validated before anything changes.

Each call either raises ApiError (a 4xx with a message) having changed nothing, or applies its
change at once: pools rebuild their scheduler on every change, so the next pick sees it.

State changes are operator events of the instance-state machine (balancing/transitions.py),
with causes starting with "operator": an operator's drain or maint holds until `enable`, which
readmits the instance (through `slow-start` when the pool ramps; the next failed health check
takes it down again if it is not healthy). `enable` does not lift `down`: it cannot make an
instance healthy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import OPERATOR, Pool
from tidegate.balancing.transitions import Event
from tidegate.config.model import split_address

MAX_WEIGHT = 1_000_000  # the config file's bound too


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise ApiError(400, "a JSON object is required as the request body")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object")
    return doc


def find_pool(pools: Mapping[str, Pool], name: str) -> Pool:
    pool = pools.get(name)
    if pool is None:
        known = ", ".join(sorted(pools)) or "none"
        raise ApiError(404, f"no pool {name!r} (pools: {known})")
    return pool


def find_instance(pool: Pool, address: str) -> Instance:
    inst = pool.get(address)
    if inst is None:
        raise ApiError(404, f"no instance {address!r} in pool {pool.name!r}")
    return inst


def check_weight(value: Any) -> int:
    # bool is an int to Python, not to an operator
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"weight must be an integer, not {json.dumps(value)}")
    if value < 0:
        raise ApiError(400, f"weight must be >= 0, not {value}")
    if value > MAX_WEIGHT:
        raise ApiError(400, f"weight must be <= {MAX_WEIGHT}, not {value}")
    return value


def _only(doc: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


class NewInstance:
    """A validated POST /api/pools/{pool}/instances body."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        _only(doc, ("address", "weight", "meta"))
        address = doc.get("address")
        if not isinstance(address, str) or not address.strip():
            raise ApiError(400, "address is required: a string HOST:PORT")
        self.address = address.strip()
        try:
            self.host, self.port = split_address(self.address)
        except ValueError as exc:
            raise ApiError(400, f"bad address: {exc}") from None
        if self.port == 0:
            raise ApiError(400, f"bad address: {self.address!r}: port 0")
        self.weight = check_weight(doc.get("weight", 1))
        meta = doc.get("meta", {})
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise ApiError(400, 'meta must be an object of strings, e.g. {"supervisor": "http://…"}')
        self.meta: dict[str, str] = dict(meta)


def add_instance(pool: Pool, new: NewInstance) -> Instance:
    if pool.get(new.address) is not None:
        raise ApiError(409, f"instance {new.address!r} is already in pool {pool.name!r}")
    inst = pool.add(new.address, new.host, new.port, new.weight)
    inst.meta.update(new.meta)
    return inst


def drain(pool: Pool, inst: Instance, why: str = "drain") -> None:
    pool.apply(inst, Event.OPERATOR_DRAIN, f"{OPERATOR}: {why}")


def maint(pool: Pool, inst: Instance) -> None:
    pool.apply(inst, Event.OPERATOR_MAINT, f"{OPERATOR}: maint")


def enable(pool: Pool, inst: Instance) -> None:
    pool.apply(inst, Event.OPERATOR_ENABLE, f"{OPERATOR}: enable")


def requested_weight(doc: Mapping[str, Any]) -> int:
    """The weight a PUT …/weight body asks for, validated."""
    _only(doc, ("weight",))
    if "weight" not in doc:
        raise ApiError(400, 'weight is required: {"weight": N}')
    return check_weight(doc["weight"])


def set_weight(pool: Pool, inst: Instance, doc: Mapping[str, Any]) -> None:
    pool.set_weight(inst, requested_weight(doc))
