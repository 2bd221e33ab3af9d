"""The JSON shapes of GET /api/pools (and of the instance every operator call answers with).

Services that implement `describe_pool(pool)` add facts under their own name: the pool gets the
dict under `name`, except an "instances" entry ({address: {...}}), whose per-instance dicts go
under `name` in each instance. So `pools[0]["health"]["check"]` is the pool's check settings and
`pools[0]["instances"][0]["health"]["healthy"]` that instance's verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool
from tidegate.observe.iops import IopsMeter

FIGURES = ("connections", "iops", "requests", "bytes_in", "bytes_out", "failures", "retries")


def instance_json(
    inst: Instance, iops: IopsMeter, origin: str, in_state_s: float | None = None
) -> dict[str, Any]:
    c = inst.counters
    return {
        "address": inst.address,
        "state": inst.state.value,
        "weight": inst.weight,
        "effective_weight": round(inst.effective_weight, 4),
        "ramp": round(inst.ramp, 4),
        "connections": c.active,
        "iops": round(iops.iops(c), 3),
        "requests": c.completed,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "failures": c.failures,
        "retries": c.retries,
        "latency": {"count": sum(c.latency_counts), "sum_seconds": round(c.latency_sum, 6)},
        "responses": {f"{k + 1}xx": n for k, n in enumerate(c.status_counts)},
        "meta": dict(inst.meta),
        "origin": origin,
        "version": inst.meta.get("version"),
        "in_state_s": in_state_s,
    }


def pool_json(
    pool: Pool,
    iops: IopsMeter,
    registered: Iterable[str],
    described: Mapping[str, Mapping[str, Any]],
    in_state: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    api_added = set(registered)
    in_state = in_state or {}
    instances = [
        instance_json(i, iops, "api" if i.address in api_added else "config", in_state.get(i.address))
        for i in pool
    ]
    totals: dict[str, float] = {k: 0 for k in FIGURES}
    for inst in instances:
        for k in FIGURES:
            totals[k] += inst[k]
    totals["iops"] = round(totals["iops"], 3)
    doc: dict[str, Any] = {
        "name": pool.name,
        "scheduler": pool.scheduler_name,
        "hash_key": pool.hash_key,
        "slow_start": pool.slow_start,
        "totals": totals,
        "instances": instances,
    }
    by_address = {i["address"]: i for i in instances}
    for service, facts in described.items():
        facts = dict(facts)
        per_instance = facts.pop("instances", None)
        if isinstance(per_instance, Mapping):
            for address, value in per_instance.items():
                if address in by_address:
                    by_address[address][service] = value
        doc[service] = facts
    return doc
