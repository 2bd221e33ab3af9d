"""Before a rollout starts: which instances, in which batches, with which limits — or why not.

Pure functions over the pool as the admin API shows it (pool_view.py). A rollout refuses to start
rather than stop half-way for a reason it could have seen: an instance with no supervisor to
restart it, a batch that would leave nothing serving, a DNS rollout of a pool no DNS record uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tidegate.config.units import parse_duration
from tidegate.rollout.machine import SERVING, Layer, Limits
from tidegate.rollout.pool_view import ApiInstance, PoolView


class PlanError(ValueError):
    """The rollout cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class RolloutPlan:
    batches: tuple[tuple[ApiInstance, ...], ...]
    skipped: tuple[tuple[str, str], ...]  # (address, why)
    limits: Limits


def batches(items: Sequence[ApiInstance], size: int) -> tuple[tuple[ApiInstance, ...], ...]:
    if size < 1:
        raise PlanError("--batch must be at least 1")
    return tuple(tuple(items[i : i + size]) for i in range(0, len(items), size))


def _duration(value: object) -> float | None:
    """Seconds from the admin API's health settings: a number, or text like "2s" / "200ms"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(parse_duration(value))
        except ValueError:
            return None
    return None


def limits_for(pool: PoolView, base: Limits, rise: int | None, interval: float | None) -> Limits:
    """The pool's own health settings (rise, interval) unless given on the command line."""
    health = pool.health
    if rise is None:
        value = health.get("rise")
        rise = value if isinstance(value, int) and value >= 1 else base.rise
    if interval is None:
        interval = _duration(health.get("interval")) or base.interval
    return replace(base, rise=rise, interval=interval)


def dns_wait(pool: PoolView, grace: float) -> tuple[float, str]:
    """How long a withdrawn address may still be in caches: the pool's max TTL plus grace."""
    dns = pool.dns
    if dns is None or not isinstance(dns.get("max_ttl"), int | float):
        raise PlanError(
            f"pool {pool.name!r} is not used by any DNS record (GET /api/pools shows no "
            '"dns": {"max_ttl": …} for it); use --layer http or lvs'
        )
    ttl = float(dns["max_ttl"])
    return ttl + grace, f"max TTL {ttl:g} s + grace {grace:g} s"


def make_plan(
    pool: PoolView,
    layer: Layer,
    batch: int,
    limits: Limits,
    *,
    rise: int | None = None,
    interval: float | None = None,
    dns_grace: float = 1.0,
) -> RolloutPlan:
    if not pool.instances:
        raise PlanError(f"pool {pool.name!r} has no instances")
    no_supervisor = [i.address for i in pool.instances if not i.supervisor]
    if no_supervisor:
        raise PlanError(
            f'no supervisor known for {", ".join(no_supervisor)} (its meta has no "supervisor"): '
            "run the instances with `tidegate serve … --register ADMIN_URL --pool NAME`"
        )
    skipped = tuple(
        (i.address, "in maint (an operator took it out)") for i in pool.instances if i.state == "maint"
    )
    todo = [i for i in pool.instances if i.state != "maint"]
    serving = sum(1 for i in pool.instances if i.state in SERVING)
    size = min(batch, len(todo)) if todo else batch
    if todo and serving - size < 1 and len(pool.instances) > 1:
        raise PlanError(
            f"a batch of {size} would leave no instance of pool {pool.name!r} serving "
            f"({serving} serving now); use a smaller --batch"
        )
    limits = limits_for(pool, limits, rise, interval)
    if layer is Layer.DNS:
        seconds, why = dns_wait(pool, dns_grace)
        limits = replace(limits, dns_wait=seconds, dns_why=why)
    return RolloutPlan(batches(todo, batch), skipped, limits)
