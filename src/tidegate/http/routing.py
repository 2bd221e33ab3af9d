"""Where a request goes: the route table and everything per target computed once per (re)load.

A `Target` carries what the hot path needs for a request to that pool — the pool object, its
retry policy, its retry budget and the hash-key function (None unless the scheduler hashes) —
so a request costs one table lookup and no lookups by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tidegate.balancing.pool import Pool
from tidegate.config.model import HttpConfig
from tidegate.http.attempts import RetryBudget, RetryPolicy

# (request, client address bytes) → the key a hashing scheduler maps to an instance.
KeyFunction = Callable[["KeySource", bytes], bytes]

HASHING_SCHEDULERS = frozenset({"consistent-hash", "maglev", "source-hash"})


class KeySource(Protocol):
    """What a key function may read from a request (implemented by http.request.Request)."""

    url: bytes
    names: list[bytes]
    values: list[bytes]


def _source_ip(req: KeySource, client: bytes) -> bytes:
    return client


def _uri(req: KeySource, client: bytes) -> bytes:
    return req.url


def _header(name: bytes) -> KeyFunction:
    def key(req: KeySource, client: bytes) -> bytes:
        try:
            return req.values[req.names.index(name)]
        except ValueError:
            return b""

    return key


def _cookie(name: bytes) -> KeyFunction:
    prefix = name + b"="

    def key(req: KeySource, client: bytes) -> bytes:
        for n, v in zip(req.names, req.values, strict=True):
            if n != b"cookie":
                continue
            for part in v.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :]
        return b""

    return key


def key_function(pool: Pool) -> KeyFunction | None:
    if pool.scheduler_name not in HASHING_SCHEDULERS:
        return None
    kind, _, arg = pool.hash_key.partition(":")
    if kind == "uri":
        return _uri
    if kind == "header":
        return _header(arg.strip().lower().encode("latin-1"))
    if kind == "cookie":
        return _cookie(arg.strip().encode("latin-1"))
    return _source_ip


@dataclass(slots=True)
class Target:
    pool: Pool
    name: str
    policy: RetryPolicy
    budget: RetryBudget
    key: KeyFunction | None


class RouteTable:
    """Host (exact, case-insensitive, port ignored) then longest path prefix; else the default."""

    def __init__(
        self,
        by_host: dict[bytes, list[tuple[bytes, Target | None]]],
        any_host: list[tuple[bytes, Target | None]],
        default: Target | None,
    ) -> None:
        self.by_host = by_host
        self.any_host = any_host
        self.default = default
        # The common case, one default pool and no routes, skips all matching.
        self.trivial = not by_host and not any_host

    def match(self, host: bytes | None, path: bytes) -> Target | None:
        if self.trivial:
            return self.default
        if self.by_host and host is not None:
            name = host.lower()
            name = name[: name.find(b"]") + 1] if name[:1] == b"[" else name.partition(b":")[0]
            routes = self.by_host.get(name)
            if routes is not None:
                for prefix, target in routes:
                    if path.startswith(prefix):
                        return target
        for prefix, target in self.any_host:
            if path.startswith(prefix):
                return target
        return self.default


def build_routes(cfg: HttpConfig, pools: Mapping[str, Pool], budgets: dict[str, RetryBudget]) -> RouteTable:
    """The table for one [[http]] section. A route naming an unknown pool answers 502."""
    targets: dict[tuple[str, bool], Target | None] = {}

    def target(pool_name: str, idempotent: bool) -> Target | None:
        k = (pool_name, idempotent)
        if k not in targets:
            pool = pools.get(pool_name)
            if pool is None:
                targets[k] = None
            else:
                budget = budgets.get(pool_name)
                if budget is None or budget.ratio != cfg.retry.budget:
                    budget = budgets[pool_name] = RetryBudget(cfg.retry.budget)
                targets[k] = Target(
                    pool,
                    pool_name,
                    RetryPolicy.from_config(cfg.retry, idempotent),
                    budget,
                    key_function(pool),
                )
        return targets[k]

    by_host: dict[bytes, list[tuple[bytes, Target | None]]] = {}
    any_host: list[tuple[bytes, Target | None]] = []
    for r in cfg.routes:
        entry = (r.path_prefix.encode(), target(r.pool, r.idempotent))
        if r.host:
            by_host.setdefault(r.host.lower().encode(), []).append(entry)
        else:
            any_host.append(entry)
    for routes in (*by_host.values(), any_host):
        routes.sort(key=lambda e: len(e[0]), reverse=True)
    default = target(cfg.pool, False) if cfg.pool is not None else None
    return RouteTable(by_host, any_host, default)
