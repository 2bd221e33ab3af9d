"""What the rollout and the supervisor read from `GET /api/pools`, as typed values (no I/O).

The admin API answers pools with their instances (docs/operations.md, "The admin API"). Only the fields a rollout needs
are taken: address, state, weight, connections (requests in service), meta (where its
supervisor is), and per pool the health-check settings and the facts other layers add under their
own name ("dns": {"max_ttl": …}, "lvs": {…}). Unknown fields are ignored, so the admin API may grow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ApiInstance:
    address: str
    state: str = "up"
    weight: int = 1
    connections: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def supervisor(self) -> str | None:
        return self.meta.get("supervisor")

    def health_detail(self) -> str:
        """What the gateway's own check last said of it ("health": {"last_check": …}), if anything."""
        health = self.raw.get("health")
        if isinstance(health, Mapping) and health.get("last_check"):
            return str(health["last_check"])
        return ""

    def lvs_connections(self) -> int:
        """Established connections the LVS director holds for this real server ("lvs": {"active"}),
        as `ipvsadm` counts ActiveConn; entries closing (inactive) need no waiting for."""
        lvs = self.raw.get("lvs")
        if isinstance(lvs, Mapping) and isinstance(lvs.get("active"), int):
            return int(lvs["active"])
        return self.connections

    @property
    def dns_ip(self) -> str | None:
        dns = self.raw.get("dns")
        return str(dns["ip"]) if isinstance(dns, Mapping) and dns.get("ip") else None

    @property
    def in_dns_answers(self) -> bool:
        dns = self.raw.get("dns")
        return bool(isinstance(dns, Mapping) and dns.get("in_answers"))


@dataclass(frozen=True)
class PoolView:
    name: str
    instances: tuple[ApiInstance, ...]
    health: Mapping[str, Any] = field(default_factory=dict)
    slow_start: float = 0.0
    raw: Mapping[str, Any] = field(default_factory=dict)

    def get(self, address: str) -> ApiInstance | None:
        for inst in self.instances:
            if inst.address == address:
                return inst
        return None

    def answered_for(self, inst: ApiInstance) -> bool:
        """Is `inst`'s address in the DNS answers on its own account? An address shared with
        another instance that still serves (several ports on one IP) stays in them for that one:
        DNS cannot tell them apart, so there is nothing to wait for."""
        if not inst.in_dns_answers:
            return False
        return not any(
            o.address != inst.address and o.dns_ip == inst.dns_ip and o.state in ("up", "slow-start")
            for o in self.instances
        )

    @property
    def dns(self) -> Mapping[str, Any] | None:
        value = self.raw.get("dns")
        return value if isinstance(value, Mapping) else None


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def parse_instance(doc: Mapping[str, Any]) -> ApiInstance:
    meta = doc.get("meta") or {}
    return ApiInstance(
        address=str(doc["address"]),
        state=str(doc.get("state", "up")),
        weight=_int(doc.get("weight"), 1),
        connections=_int(doc.get("connections")),
        meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, Mapping) else {},
        raw=doc,
    )


def parse_pool(doc: Mapping[str, Any], name: str | None = None) -> PoolView:
    instances = doc.get("instances") or []
    if isinstance(instances, Mapping):  # {address: {...}} as well as [{address: ...}]
        instances = [{"address": k, **v} for k, v in instances.items()]
    health = doc.get("health")
    if isinstance(health, Mapping) and isinstance(health.get("check"), Mapping):
        health = health["check"]  # the health service's facts: {"check": {rise, interval, …}, …}
    slow_start = doc.get("slow_start", 0.0)
    return PoolView(
        name=str(doc.get("name", name or "")),
        instances=tuple(parse_instance(i) for i in instances),
        health=health if isinstance(health, Mapping) else {},
        slow_start=float(slow_start) if isinstance(slow_start, int | float) else 0.0,
        raw=doc,
    )


def parse_pools(doc: Any) -> dict[str, PoolView]:
    """Pools by name, from {"pools": [...]}, {"pools": {name: ...}}, [...] or {name: ...}."""
    if isinstance(doc, Mapping) and "pools" in doc:
        doc = doc["pools"]
    if isinstance(doc, Mapping):
        return {name: parse_pool(p, name) for name, p in doc.items() if isinstance(p, Mapping)}
    if isinstance(doc, list):
        pools = [parse_pool(p) for p in doc if isinstance(p, Mapping)]
        return {p.name: p for p in pools}
    raise ValueError("GET /api/pools: expected a list or an object of pools")
