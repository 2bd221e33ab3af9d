"""Which running services a reloaded config keeps, which sections it adds, which it removes.

A section is known by its kind and, for those that listen ([[http]], [[tcp]], [dns], [admin]),
its listen address, the way nginx knows a server by its `listen` and HAProxy a bind line by its
address: a section whose listen changed is a new listener (the old one stops gracefully, the new
one binds), not the same one moved. [lvs], the health checks of [[pools]] and the etcd
[registry] are kept while present; their own reload decides what of them can change in place.
Several sections on the same address (port 0: "any free port") pair in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tidegate.config.model import Config

# A section's identity: (kind, key); key is the listen address for kinds that listen, else the kind.
Key = tuple[str, str]
REPEATABLE = ("http", "tcp")


@dataclass(frozen=True)
class Section:
    kind: str
    key: Key
    cfg: Any  # the section's config (the whole Config for the health checks)
    position: int  # its index among the config's sections of its kind


@dataclass
class SectionPlan:
    kept: list[tuple[int, int]] = field(default_factory=list)  # (running index, new index)
    added: list[int] = field(default_factory=list)  # new indices
    removed: list[int] = field(default_factory=list)  # running indices


def sections_of(config: Config) -> list[Section]:
    """Every section that runs as a service, in the order the runtime starts them."""
    out: list[Section] = []
    if config.registry.type == "etcd":  # first: the pools hold the shared state before traffic flows
        out.append(Section("registry", ("registry", "registry"), config, 0))
    if config.pools:
        out.append(Section("health", ("health", "health"), config, 0))
    if config.admin is not None:
        out.append(Section("admin", ("admin", config.admin.listen), config.admin, 0))
    for i, h in enumerate(config.http):
        out.append(Section("http", ("http", h.listen), h, i))
    for i, t in enumerate(config.tcp):
        out.append(Section("tcp", ("tcp", t.listen), t, i))
    if config.dns is not None:
        out.append(Section("dns", ("dns", config.dns.listen), config.dns, 0))
    if config.lvs is not None:
        out.append(Section("lvs", ("lvs", "lvs"), config.lvs, 0))
    return out


def plan_sections(running: Sequence[Key], wanted: Sequence[Key]) -> SectionPlan:
    """Pair each wanted key with the first unpaired running one equal to it (file order)."""
    free: dict[Key, list[int]] = {}
    for i, key in enumerate(running):
        free.setdefault(key, []).append(i)
    plan = SectionPlan()
    for j, key in enumerate(wanted):
        slots = free.get(key)
        if slots:
            plan.kept.append((slots.pop(0), j))
        else:
            plan.added.append(j)
    plan.removed = sorted(i for slots in free.values() for i in slots)
    return plan
