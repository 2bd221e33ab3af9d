"""Pools built from the config file, and a reload that changes them in place.

Reload keeps Instance objects (and so their figures, states and in-flight counts) for addresses
that stay; new addresses are added, vanished ones removed. Operator state (maint, draining) set
through the admin API survives a reload, and so do instances registered through the admin API
(`registered`: pool name → addresses; an address the file now lists becomes the file's).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, PoolConfig, split_address


def build_pool(pc: PoolConfig) -> Pool:
    pool = Pool(pc.name, pc.scheduler, pc.hash_key, pc.slow_start)
    for ic in pc.instances:
        host, port = split_address(ic.address)
        pool.add(ic.address, host, port, ic.weight)
    return pool


def build_pools(cfg: Config) -> dict[str, Pool]:
    return {pc.name: build_pool(pc) for pc in cfg.pools}


def reload_pools(
    pools: dict[str, Pool], cfg: Config, registered: MutableMapping[str, set[str]] | None = None
) -> dict[str, Pool]:
    """Apply cfg to the running pools; returns the new name → pool map (same objects kept)."""
    registered = registered if registered is not None else {}
    for name in [n for n in registered if n not in {pc.name for pc in cfg.pools}]:
        del registered[name]
    out: dict[str, Pool] = {}
    for pc in cfg.pools:
        pool = pools.get(pc.name)
        if pool is None:
            out[pc.name] = build_pool(pc)
            continue
        if pool.scheduler_name != pc.scheduler or pool.hash_key != pc.hash_key:
            pool.set_scheduler(pc.scheduler, pc.hash_key)
        pool.slow_start = pc.slow_start
        wanted = {ic.address: ic for ic in pc.instances}
        kept = registered.get(pc.name, set())
        kept.difference_update(wanted)
        for inst in pool:
            if inst.address not in wanted and inst.address not in kept:
                pool.remove(inst.address)
        for address, ic in wanted.items():
            have = pool.get(address)
            if have is None:
                host, port = split_address(address)
                pool.add(address, host, port, ic.weight)
            elif have.weight != ic.weight:
                pool.set_weight(have, ic.weight)
        out[pc.name] = pool
    return out
