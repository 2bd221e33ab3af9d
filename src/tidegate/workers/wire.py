"""What the main process and its HTTP worker processes tell each other, and the pure parts of it.

Theory of operation (`workers = N` in [[http]]). The main process owns the pools: health checks,
the admin API and config reloads change them there, and it pushes a *snapshot* of every pool
(membership, weight, state, slow-start ramp) to each worker whenever a pool's version moves.
Workers mirror it into pools of their own, which their gateway picks from. The other way, each
worker sends, a few times a second, its *figures*: the cumulative counters of every instance
(connections in service, completed requests, bytes, failures, retries, latency histogram), the
passive-health results since the last report, and its idle upstream connections. The main
process adds each worker's increase since its previous report into its own instances' counters,
so GET /api/pools, /metrics and the dashboard show the sums without knowing about workers. A
state change a worker makes itself (an instance's drain signal) goes to the main process at once
and comes back to every worker in the next snapshot.

Stopping (a SIGTERM, or a reload that removed the section): the main process sends `close`, each
worker stops accepting and answers `closed`, then the main process closes its copies of the
listening sockets, so the address refuses at once rather than queue connections nobody accepts;
`stop` follows, and each worker finishes what it has in flight within the grace period.

Messages are JSON objects, each framed by a 4-byte big-endian length, over a socketpair.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.observe.counters import Counters

_LEN = struct.Struct(">I")
MAX_MESSAGE = 64 << 20

# How often a worker reports its figures (seconds): the admin figures lag by at most this much.
REPORT_INTERVAL = 0.25


# --- framing ------------------------------------------------------------------------------------
def frame(msg: Mapping[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LEN.size)
        (n,) = _LEN.unpack(head)
        if n > MAX_MESSAGE:
            raise ValueError(f"message of {n} bytes from the other process")
        msg: dict[str, Any] = json.loads(await reader.readexactly(n))
        return msg
    except asyncio.IncompleteReadError:
        return None


# --- pools: main → workers ----------------------------------------------------------------------
def pool_snapshot(pools: Mapping[str, Pool]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, pool in pools.items():
        out[name] = {
            "scheduler": pool.scheduler_name,
            "hash_key": pool.hash_key,
            "slow_start": pool.slow_start,
            "instances": [
                [i.address, i.host, i.port, i.weight, i.state.value, i.ramp, pool.held(i)] for i in pool
            ],
        }
    return out


def apply_snapshot(pools: dict[str, Pool], snap: Mapping[str, Any]) -> dict[str, Pool]:
    """Make `pools` mirror `snap` (in place where a pool's scheduler is unchanged); returns the
    pools, the same objects where possible so in-flight requests keep theirs."""
    out: dict[str, Pool] = {}
    for name, p in snap.items():
        pool = pools.get(name)
        if pool is None or (pool.scheduler_name, pool.hash_key) != (p["scheduler"], p["hash_key"]):
            pool = Pool(name, p["scheduler"], p["hash_key"], p["slow_start"])
        pool.slow_start = p["slow_start"]
        seen = set()
        for address, host, port, weight, state, ramp, held in p["instances"]:
            seen.add(address)
            inst = pool.get(address)
            if inst is None or (inst.host, inst.port) != (host, port):
                if inst is not None:
                    pool.remove(address)
                inst = pool.add(address, host, port, weight)
            if inst.weight != weight:
                pool.set_weight(inst, weight)
            new = State(state)
            if inst.state is not new or pool.held(inst) != held:
                pool.set_state(inst, new, "main process", held=held)
            pool.set_ramp(inst, ramp)
        for inst in pool:
            if inst.address not in seen:
                pool.remove(inst.address)
        out[name] = pool
    return out


# --- figures: workers → main --------------------------------------------------------------------
def counters_vector(c: Counters) -> list[float]:
    return [
        c.active,
        c.completed,
        c.bytes_in,
        c.bytes_out,
        c.failures,
        c.retries,
        c.latency_sum,
        *c.latency_counts,
        *c.status_counts,
    ]


_INT_FIELDS = ("active", "completed", "bytes_in", "bytes_out", "failures", "retries")


def add_increase(c: Counters, new: list[float], old: list[float] | None) -> None:
    """Add what a worker's counters grew by since `old` (its previous report) into `c`.

    `active` is a gauge: its change is added (it may be negative). A cumulative figure smaller
    than before means the worker's instance started afresh (a worker restarted, or the instance
    was removed and added again): all of the new value is then the increase.
    """
    if old is None or len(old) != len(new):
        old = [0.0] * len(new)
    for k, name in enumerate(_INT_FIELDS):
        d = int(new[k] - old[k])
        if name != "active" and d < 0:
            d = int(new[k])
        setattr(c, name, getattr(c, name) + d)
    d_sum = new[6] - old[6]
    c.latency_sum += d_sum if d_sum >= 0 else new[6]
    counts = c.latency_counts
    for k in range(len(counts)):
        d = int(new[7 + k] - old[7 + k])
        counts[k] += d if d >= 0 else int(new[7 + k])
    statuses = c.status_counts
    at = 7 + len(counts)
    for k in range(min(len(statuses), len(new) - at)):
        d = int(new[at + k] - old[at + k])
        statuses[k] += d if d >= 0 else int(new[at + k])


def figures_of(pools: Mapping[str, Pool]) -> dict[str, dict[str, list[float]]]:
    return {name: {i.address: counters_vector(i.counters) for i in pool} for name, pool in pools.items()}


class PassiveResults:
    """A worker's passive-health results between two reports, per instance: whether an attempt
    succeeded, then how many failed in a row after the last success (what outlier detection
    reads: consecutive failures)."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], list[int]] = {}

    def hook(self, pool: str) -> Any:
        results = self.results

        def on_result(inst: Instance, ok: bool) -> None:
            r = results.get((pool, inst.address))
            if r is None:
                r = results[(pool, inst.address)] = [0, 0]
            if ok:
                r[0] = 1
                r[1] = 0
            else:
                r[1] += 1

        return on_result

    def take(self) -> list[list[Any]]:
        out = [[pool, address, ok, fails] for (pool, address), (ok, fails) in self.results.items()]
        self.results = {}
        return out


def replay_results(pools: Mapping[str, Pool], results: Iterable[list[Any]]) -> None:
    """Hand a worker's passive results to the main process's pools (its outlier detector)."""
    for pool_name, address, ok, fails in results:
        pool = pools.get(pool_name)
        inst = pool.get(address) if pool is not None else None
        if pool is None or inst is None:
            continue
        if ok:
            pool.report(inst, True)
        for _ in range(fails):
            pool.report(inst, False)
