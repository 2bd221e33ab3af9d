"""From the etcd registry's keys to the operations that make a pool match them (no I/O).

Theory of operation
-------------------
`Snapshot` is this process's copy of the keys under the prefix, each with the revision it was
last changed at; a deletion leaves a tombstone, so an event older than what is known (a watch
that lags behind this process's own write) is ignored instead of undoing a newer change. A
resync replaces the whole copy (and drops tombstones): the range read is the truth at its
revision.

`plan` compares one pool as it is (`Seen`, per address) with what the registry and the config
file say, and returns the operations that close the gap. It is a function of the whole desired
state, not of events, so applying it twice changes nothing, and a missed event is repaired by
the next resync. Rules:

1. Members: the file's instances, plus every registered address. A registered address the file
   lists is the file's (as with admin-API registrations, control/runtime/pools.py): the registry never removes
   it. Registered addresses that vanish from the registry are removed (`owned`: the addresses
   the registry added).
2. Weight: the operator's weight key, else the file's weight, else the registration's.
3. Operator state: the hold key. `maint` and `drain` are set whatever the local state (the key is
   the latest word of some operator); no hold ends `maint` and an operator's `draining` with an
   `enable` (readmission through slow-start when the pool ramps). Health verdicts stay local: a
   `down` instance, or one `draining` on its own drain signal, is left to the health service.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from tidegate.balancing.pool import OPERATOR, Pool
from tidegate.balancing.state import State
from tidegate.balancing.transitions import Event
from tidegate.config.model import split_address
from tidegate.control.registry.layout import (
    HOLDS,
    INSTANCES,
    WEIGHTS,
    Hold,
    Key,
    RecordError,
    Registration,
    decode_hold,
    decode_registration,
    decode_weight,
    parse_key,
)

log = logging.getLogger("tidegate.registry")

CAUSE = "etcd registry"


@dataclass
class PoolRecords:
    """What the registry says about one pool."""

    instances: dict[str, Registration] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)


class Snapshot:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.revision = 0  # of the last range read or event applied
        self._entries: dict[str, tuple[int, bytes | None]] = {}

    def load(self, revision: int, kvs: Iterable[tuple[str, int, bytes]]) -> None:
        """Replace everything with a range read made at `revision`."""
        self._entries = {key: (mod, value) for key, mod, value in kvs}
        self.revision = revision

    def apply(self, key: str, mod_revision: int, value: bytes | None) -> bool:
        """A put (`value`) or a delete (None) seen at `mod_revision`; False when it is not newer
        than what is known of the key (nothing changed)."""
        self.revision = max(self.revision, mod_revision)
        known = self._entries.get(key)
        if known is not None and known[0] >= mod_revision:
            return False
        self._entries[key] = (mod_revision, value)
        return True

    def get(self, key: str) -> tuple[int, bytes | None] | None:
        """(mod_revision, value or None for a tombstone) of `key`, None when it is unknown."""
        return self._entries.get(key)

    def live(self) -> Iterable[tuple[Key, bytes]]:
        """The live keys of the layout, parsed; unknown keys are skipped (logged by `pools`)."""
        for key, (_, value) in self._entries.items():
            if value is None:
                continue
            try:
                yield parse_key(self.prefix, key), value
            except RecordError:
                continue

    def pools(self) -> tuple[dict[str, PoolRecords], list[str]]:
        """Every pool's records, and a note for each value that could not be read."""
        out: dict[str, PoolRecords] = {}
        problems: list[str] = []
        for key, value in self.live():
            if key.kind not in (INSTANCES, HOLDS, WEIGHTS):
                continue
            records = out.setdefault(key.pool, PoolRecords())
            try:
                if key.kind == INSTANCES:
                    split_address(key.name)
                    records.instances[key.name] = decode_registration(value)
                elif key.kind == HOLDS:
                    records.holds[key.name] = decode_hold(value)
                else:
                    records.weights[key.name] = decode_weight(value)
            except (RecordError, ValueError) as exc:
                problems.append(f"{key.kind}/{key.pool}/{key.name}: {exc}")
        return out, problems


@dataclass(frozen=True, slots=True)
class UnsureWrite:
    """A write whose answer never came (etcd did not answer in time): it may have been applied."""

    pool: str
    key: str
    value: bytes | None  # None: a delete
    before: int  # the snapshot's revision when it was sent
    existed: bool  # the key was live then


def applied(write: UnsureWrite, snapshot: Snapshot) -> bool:
    """Whether what the snapshot holds shows the unsure write applied."""
    known = snapshot.get(write.key)
    if write.value is None:
        return write.existed and (known is None or known[1] is None)
    return known is not None and known[1] == write.value and known[0] > write.before


def settled(write: UnsureWrite, snapshot: Snapshot, late: bool = False) -> str:
    """What the snapshot says became of an unsure write, as a log line."""
    what = f"the {'delete' if write.value is None else 'put'} of {write.key} whose outcome was unknown"
    if not applied(write, snapshot):
        return f"{what} was not applied (as of revision {snapshot.revision})"
    return f"{what} was applied {'after all ' if late else ''}(by revision {snapshot.revision})"


# --- operations ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seen:
    """One instance as the pool has it now."""

    weight: int
    state: State = State.UP
    held: bool = False  # draining because an operator asked
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Add:
    address: str
    weight: int
    meta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Remove:
    address: str


@dataclass(frozen=True, slots=True)
class SetWeight:
    address: str
    weight: int


@dataclass(frozen=True, slots=True)
class SetMeta:
    address: str
    meta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SetHold:
    address: str
    state: State  # MAINT or DRAINING (held)


@dataclass(frozen=True, slots=True)
class Release:
    address: str  # an operator's enable


Op = Add | Remove | SetWeight | SetMeta | SetHold | Release


def plan(
    seen: Mapping[str, Seen], records: PoolRecords, static: Mapping[str, int], owned: Collection[str]
) -> list[Op]:
    """The operations that make the pool match the registry and the file (module doc, rules)."""
    ops: list[Op] = []
    now = dict(seen)
    for address in sorted(seen):
        if address in owned and address not in static and address not in records.instances:
            ops.append(Remove(address))
            del now[address]
    for address in sorted(records.instances):
        if address not in now:
            reg = records.instances[address]
            weight = records.weights.get(address, static.get(address, reg.weight))
            ops.append(Add(address, weight, dict(reg.meta)))
            now[address] = Seen(weight, meta=reg.meta)
    for address in sorted(now):
        inst = now[address]
        if address in records.weights:
            weight = records.weights[address]
        elif address in static:
            weight = static[address]
        elif address in records.instances:
            weight = records.instances[address].weight
        else:
            weight = inst.weight  # neither the file's nor the registry's: not ours to touch
        if weight != inst.weight:
            ops.append(SetWeight(address, weight))
        registration = records.instances.get(address)
        if registration is not None and address not in static and dict(registration.meta) != dict(inst.meta):
            ops.append(SetMeta(address, dict(registration.meta)))
        hold = records.holds.get(address)
        if hold == "maint":
            if inst.state is not State.MAINT:
                ops.append(SetHold(address, State.MAINT))
        elif hold == "drain":
            if not (inst.state is State.DRAINING and inst.held):
                ops.append(SetHold(address, State.DRAINING))
        elif inst.state is State.MAINT or (inst.state is State.DRAINING and inst.held):
            ops.append(Release(address))
    return ops


def owned_after(records: PoolRecords, static: Mapping[str, int]) -> set[str]:
    """The addresses the registry answers for once the plan is applied (rule 1)."""
    return {a for a in records.instances if a not in static}


def seen_in(pool: Pool) -> dict[str, Seen]:
    return {i.address: Seen(i.weight, i.state, pool.held(i), dict(i.meta)) for i in pool}


def apply_ops(pool: Pool, ops: Iterable[Op]) -> None:
    """Carry the operations out on the pool (all before the next pick: one scheduler rebuild)."""
    for op in ops:
        if isinstance(op, Add):
            host, port = split_address(op.address)
            inst = pool.add(op.address, host, port, op.weight)
            inst.meta.update(op.meta)
            log.info("pool %s instance %s: added (%s, weight %d)", pool.name, op.address, CAUSE, op.weight)
            continue
        if isinstance(op, Remove):
            pool.remove(op.address)
            log.info("pool %s instance %s: removed (%s)", pool.name, op.address, CAUSE)
            continue
        found = pool.get(op.address)
        if found is None:
            continue
        if isinstance(op, SetWeight):
            pool.set_weight(found, op.weight)
            log.info("pool %s instance %s: weight %d (%s)", pool.name, op.address, op.weight, CAUSE)
        elif isinstance(op, SetMeta):
            found.meta.clear()
            found.meta.update(op.meta)
        elif isinstance(op, SetHold):
            what = "maint" if op.state is State.MAINT else "drain"
            pool.set_state(found, op.state, f"{OPERATOR}: {what} ({CAUSE})", held=True)
        else:
            pool.apply(found, Event.OPERATOR_ENABLE, f"{OPERATOR}: enable ({CAUSE})")
