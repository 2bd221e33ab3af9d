"""The operator state a self-upgrade hands from the old tidegate process to the new one.

Theory of operation. What the old process learned while it ran and the config file does not say
travels as one JSON document: per pool and instance the state (drains, maint, health's `down`),
whether an operator holds a drain, weight and slow-start ramp as set through the API, the
instance's metadata, its cumulative counters (so a Prometheus counter never goes back because of
an upgrade), the instances registered through the API, and the health checks' verdicts and
outlier ejections. The new process builds its pools from the config as at any start and then
applies the snapshot over them: what the config no longer names is dropped, what it names anew
keeps the config's defaults.

Pure: pools in, a JSON-able dict out, and back; no sockets, no clock (ejections travel as the
seconds they have left). `VERSION` is bumped when the document changes shape; a process refuses
a document of another version, so an upgrade between incompatible releases fails cleanly and the
old process keeps serving.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.observe.counters import LATENCY_BOUNDS, Counters

VERSION = 1

# The cumulative counter fields; `active` (in service now) is a gauge of one process and stays.
_COUNTED = ("completed", "bytes_in", "bytes_out", "failures", "retries")


class SnapshotError(ValueError):
    """A document this process cannot take (another version, or not a snapshot at all)."""


@dataclass
class Verdict:
    """What the health checks think of one instance."""

    healthy: bool = True
    ejections: int = 0  # ejections in the current incident (the n of `ejection x n`)
    ejected_for: float | None = None  # seconds left of an ejection in force


@dataclass
class InstanceState:
    host: str
    port: int
    weight: int
    state: str
    held: bool
    ramp: float
    meta: dict[str, str] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Snapshot:
    pools: dict[str, dict[str, InstanceState]] = field(default_factory=dict)
    registered: dict[str, list[str]] = field(default_factory=dict)
    health: dict[str, dict[str, Verdict]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "pools": {
                name: {address: vars(inst) for address, inst in instances.items()}
                for name, instances in self.pools.items()
            },
            "registered": self.registered,
            "health": {
                name: {address: vars(v) for address, v in verdicts.items()}
                for name, verdicts in self.health.items()
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> Snapshot:
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            got = doc.get("version") if isinstance(doc, dict) else type(doc).__name__
            raise SnapshotError(f"state snapshot version {got!r}, this process reads version {VERSION}")
        try:
            return cls(
                pools={
                    name: {address: InstanceState(**inst) for address, inst in instances.items()}
                    for name, instances in doc["pools"].items()
                },
                registered={name: list(addresses) for name, addresses in doc["registered"].items()},
                health={
                    name: {address: Verdict(**v) for address, v in verdicts.items()}
                    for name, verdicts in doc["health"].items()
                },
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"malformed state snapshot: {exc}") from None


# --- counters -----------------------------------------------------------------------------------
def counters_doc(c: Counters) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(c, name) for name in _COUNTED}
    doc["latency_counts"] = list(c.latency_counts)
    doc["latency_sum"] = c.latency_sum
    doc["status_counts"] = list(c.status_counts)
    return doc


def add_counters(c: Counters, after: Mapping[str, Any], before: Mapping[str, Any] | None = None) -> None:
    """Add to `c` what the counters grew by from `before` to `after` (all of `after` if None)."""
    for name in _COUNTED:
        setattr(
            c, name, getattr(c, name) + max(0, int(after.get(name, 0)) - int((before or {}).get(name, 0)))
        )
    counts = after.get("latency_counts", [])
    was = (before or {}).get("latency_counts", [0] * len(counts))
    if len(counts) == len(c.latency_counts) == len(LATENCY_BOUNDS) + 1 and len(was) == len(counts):
        for k, n in enumerate(counts):
            c.latency_counts[k] += max(0, int(n) - int(was[k]))
    c.latency_sum += max(
        0.0, float(after.get("latency_sum", 0.0)) - float((before or {}).get("latency_sum", 0.0))
    )
    classes = after.get("status_counts", [])  # absent in a snapshot from before they were counted
    was = (before or {}).get("status_counts", [0] * len(classes))
    if len(classes) == len(c.status_counts) and len(was) == len(classes):
        for k, n in enumerate(classes):
            c.status_counts[k] += max(0, int(n) - int(was[k]))


# --- pools → snapshot → pools ---------------------------------------------------------------------
def capture(
    pools: Mapping[str, Pool],
    registered: Mapping[str, set[str]] | None = None,
    health: Mapping[str, Mapping[str, Verdict]] | None = None,
) -> Snapshot:
    return Snapshot(
        pools={
            name: {
                inst.address: InstanceState(
                    inst.host,
                    inst.port,
                    inst.weight,
                    inst.state.value,
                    pool.held(inst),
                    inst.ramp,
                    dict(inst.meta),
                    counters_doc(inst.counters),
                )
                for inst in pool
            }
            for name, pool in pools.items()
        },
        registered={name: sorted(addresses) for name, addresses in (registered or {}).items()},
        health={name: dict(verdicts) for name, verdicts in (health or {}).items()},
    )


def restore(snap: Snapshot, pools: Mapping[str, Pool], registered: MutableMapping[str, set[str]]) -> None:
    """Apply `snap` to pools just built from the config: instances registered through the API come
    back, and every instance the snapshot knows takes its state, weight, ramp, metadata and
    counters from it. Pools and registrations the config no longer has are left out."""
    for name, addresses in snap.registered.items():
        pool = pools.get(name)
        if pool is None:
            continue
        kept = registered.setdefault(name, set())
        for address in addresses:
            inst_state = snap.pools.get(name, {}).get(address)
            if pool.get(address) is None and inst_state is not None:
                pool.add(address, inst_state.host, inst_state.port, inst_state.weight)
                kept.add(address)
    for name, instances in snap.pools.items():
        pool = pools.get(name)
        if pool is None:
            continue
        for address, s in instances.items():
            inst = pool.get(address)
            if inst is None:
                continue
            if inst.weight != s.weight:
                pool.set_weight(inst, s.weight)
            state = State(s.state)
            if inst.state is not state or pool.held(inst) != s.held:
                pool.set_state(inst, state, "handed over by the previous process", held=s.held)
            pool.set_ramp(inst, s.ramp)
            inst.meta.update(s.meta)
            add_counters(inst.counters, s.counters)
