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

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import OPERATOR, Pool
from tidegate.balancing.transitions import Event

if TYPE_CHECKING:
    from tidegate.control.admin.bodies import NewInstance

MAX_WEIGHT = 1_000_000
ACTOR = re.compile(r"[a-z][a-z0-9-]{0,31}")  # the config file's bound too


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def add_instance(pool: Pool, new: NewInstance) -> Instance:
    if pool.get(new.address) is not None:
        raise ApiError(409, f"instance {new.address!r} is already in pool {pool.name!r}")
    inst = pool.add(new.address, new.host, new.port, new.weight)
    inst.meta.update(new.meta)
    return inst


def drain(pool: Pool, inst: Instance, why: str = "drain") -> None:
    pool.apply(inst, Event.OPERATOR_DRAIN, f"{OPERATOR}: {why}")


def maint(pool: Pool, inst: Instance, why: str = "maint") -> None:
    pool.apply(inst, Event.OPERATOR_MAINT, f"{OPERATOR}: {why}")


def enable(pool: Pool, inst: Instance, why: str = "enable") -> None:
    pool.apply(inst, Event.OPERATOR_ENABLE, f"{OPERATOR}: {why}")


def actor_of(value: str | None) -> str | None:
    """Who calls, from the Tidegate-Actor header (e.g. "rollout"), for the state change's cause
    and so the dashboard's event list; anything but a short lowercase word is ignored."""
    if value is None or not ACTOR.fullmatch(value):
        return None
    return value
