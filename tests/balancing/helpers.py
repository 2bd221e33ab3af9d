"""Pools and instances for the balancing tests (no sockets: schedulers are pure)."""

from __future__ import annotations

from collections.abc import Sequence

from tidegate.balancing import Pool

# Every name docs/configuration.md lists, then the IPVS names the LVS layer asks for.
INTERFACE_SCHEDULERS = (
    "round-robin",
    "weighted-round-robin",
    "least-connections",
    "p2c",
    "random",
    "consistent-hash",
    "maglev",
    "source-hash",
)
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sh", "mh")
ALL_SCHEDULERS = INTERFACE_SCHEDULERS + IPVS_SCHEDULERS
HASHING = ("consistent-hash", "maglev", "source-hash", "sh", "mh")
# Schedulers whose long-run shares follow the weights (round-robin and lc ignore them).
WEIGHTED = tuple(s for s in ALL_SCHEDULERS if s not in ("round-robin", "rr", "lc"))


def make_pool(scheduler: str, weights: Sequence[int], slow_start: float = 0.0) -> Pool:
    pool = Pool("test", scheduler, slow_start=slow_start)
    for i, w in enumerate(weights):
        pool.add(f"10.0.{i // 250}.{i % 250 + 1}:8080", f"10.0.{i // 250}.{i % 250 + 1}", 8080, w)
    return pool


def key(i: int) -> bytes:
    return b"client-%d" % i
