"""The etcd registry: several tidegate processes share instances and operator state.

Theory of operation
-------------------
etcd is the source of truth for what was registered and what an operator set; each process
keeps a copy (`Snapshot`) and makes its pools match it (`registry_sync.plan`). Nothing else is
shared: health verdicts, ejections, slow-start ramps and figures stay local to each process.

- Reading: a range read of the prefix, applied whole, then a watch from the next revision. When
  the watch breaks (etcd restarted, unreachable, the revision compacted) the loop reads the whole
  prefix again and watches on from there: a resync by revision, repairing whatever was missed.
  While etcd is away the pools keep the last state they had: traffic goes on, nothing flaps.
- Writing: the admin API of any process writes the key (registration, hold, weight) and applies
  it at once to its own pools when etcd acknowledged it; the other processes apply it when their
  watch delivers it. When etcd cannot be reached (the request never left) the call fails (503)
  and changes nothing, here or anywhere: an operator never sees a change that only one process
  made. When the request left but no answer came (a frozen or partitioned etcd), its outcome is
  unknown: etcd may still apply it. The call then says so (504), nothing is applied here, the
  prefix is read again (once etcd answers) and the log says whether the write was applied; every
  process converges on what etcd holds either way.
- Presence: each process keeps `processes/HOST:PID` alive under a lease of `[registry] lease`.

Pools themselves (scheduler, health checks) come from each process's config file; keys for a
pool the file does not name are ignored by that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tidegate.balancing.pool import Pool
from tidegate.config.model import Config
from tidegate.control.registry.etcd_client import EtcdClient, EtcdError
from tidegate.control.registry.layout import (
    PROCESSES,
    Hold,
    RecordError,
    Registration,
    encode_hold,
    encode_process,
    encode_registration,
    encode_weight,
    hold_key,
    instance_key,
    parse_key,
    process_key,
    weight_key,
)
from tidegate.control.registry.lease import LeasedKeys
from tidegate.control.registry.sync import (
    PoolRecords,
    Snapshot,
    UnsureWrite,
    applied,
    apply_ops,
    owned_after,
    plan,
    seen_in,
    settled,
)

if TYPE_CHECKING:
    from tidegate.control.runtime.process import Runtime

log = logging.getLogger("tidegate.registry")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")

_runtimes = itertools.count()
FIRST_SYNC = 2.0  # seconds start() waits for etcd before going on without it
MAX_BACKOFF = 1.0  # seconds between attempts while etcd does not answer
LATE_WATCH = 30.0  # seconds an unsure write found not applied is still looked out for


class RegistryUnavailable(RuntimeError):
    """etcd did not take a write; nothing changed."""


class RegistryOutcomeUnknown(RuntimeError):
    """A write was sent but etcd did not answer: it may be applied yet; the registry converges."""


def _say(text: str) -> None:
    announce.info(f"registry {text}")


class EtcdRegistry:
    name = "registry"

    def __init__(self, config: Config, runtime: Runtime) -> None:
        self.cfg = config.registry
        self.runtime = runtime
        self.prefix = self.cfg.prefix
        self.client = EtcdClient(self.cfg.endpoints)
        self.snapshot = Snapshot(self.prefix)
        self.static = _static(config)
        # Addresses the registry added, per pool: the runtime's reload keeps them (control/runtime/pools.py).
        self.registered = runtime.registered
        self.connected = False
        self.synced = asyncio.Event()
        self._tried = asyncio.Event()  # the first read of the prefix succeeded or failed
        self._problems: set[str] = set()
        self._unknown_pools: set[str] = set()
        self._loop: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set and replaced after every apply (see `until`)
        self._unsure: list[UnsureWrite] = []  # writes with no answer, until a full read settles them
        # ... and those a full read found not applied: etcd may still apply a request it read
        # before it froze after that read (each goroutine goes its own pace), so the watch looks
        # out for them a while longer.
        self._late: dict[str, tuple[float, UnsureWrite]] = {}
        # HOST:PID, and a count for a second runtime in the same process (tests)
        n = next(_runtimes)
        self.process_name = f"{socket.gethostname()}:{os.getpid()}" + (f".{n}" if n else "")
        admin = config.admin.listen if config.admin is not None else None
        self._presence = LeasedKeys(
            self.client,
            int(self.cfg.lease),
            {process_key(self.prefix, self.process_name): encode_process(admin, os.getpid())},
            lambda text: log.info("presence: %s", text),
            self._restart_watch,
        )
        runtime.shared = self

    # --- Service --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.create_task(self._sync_loop(), name="etcd-registry")
        self._presence.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), FIRST_SYNC)
        if not self.synced.is_set():
            _say(
                f"cannot reach etcd at {', '.join(self.cfg.endpoints)}; starting from the config file, retrying"
            )

    def _restart_watch(self) -> None:
        """The presence renewal failed: a watch on a connection that died without a reset (a
        partition) would wait forever, so read the prefix again (a resync, or `lost etcd`)."""
        if self._loop is not None and not self._loop.done():
            self._loop.cancel()
            self._loop = asyncio.create_task(self._sync_loop(), name="etcd-registry")

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        if config.registry != self.cfg:
            log.warning("[registry] changes only on restart; still on %s", ", ".join(self.cfg.endpoints))
        self.static = _static(config)
        self._apply_all()

    async def stop(self, grace: float) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self._presence.close()
        await self.client.aclose()
        if self.runtime.shared is self:  # (a reload that drops [registry])
            self.runtime.shared = None

    def describe_pool(self, pool: str) -> dict[str, Any] | None:
        processes = sum(1 for key, _ in self.snapshot.live() if key.kind == PROCESSES)
        return {
            "type": "etcd",
            "endpoint": self.client.endpoint,
            "prefix": self.prefix,
            "connected": self.connected,
            "revision": self.snapshot.revision,
            "processes": processes,
        }

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds, looking again after each change the registry applies
        or each connection change (for tests and tools: no polling)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- reading --------------------------------------------------------------------------
    async def _sync_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                revision, kvs = await self.client.range_prefix(self.prefix)
                self.snapshot.load(revision, ((kv.key, kv.mod_revision, kv.value or b"") for kv in kvs))
                self._apply_all()
                self._settle()
                if not self.connected:
                    again = "resynced" if self.synced.is_set() else "synced"
                    _say(f"{again} with etcd at {self.client.endpoint} (revision {revision})")
                self.connected = True
                self.synced.set()
                self._tried.set()
                self._notify()
                backoff = 0.1
                async for msg in self.client.watch(self.prefix, revision + 1):
                    if msg.canceled:
                        raise EtcdError(
                            f"watch canceled ({msg.reason or f'compacted at {msg.compact_revision}'})"
                        )
                    touched: set[str] = set()
                    for kv in msg.events:
                        if self.snapshot.apply(kv.key, kv.mod_revision, kv.value):
                            touched.add(self._pool_of(kv.key))
                            if kv.key in self._late:
                                self._settle_late(kv.key)
                    self._apply_pools(touched)
                    self._notify()
            except EtcdError as exc:
                if self.connected:
                    _say(f"lost etcd ({exc}); keeping the last state, retrying")
                self.connected = False
                self._tried.set()
                self._notify()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _pool_of(self, key: str) -> str:
        try:
            return parse_key(self.prefix, key).pool
        except RecordError:
            return ""

    def _apply_all(self) -> None:
        self._apply_pools(set(self.runtime.pools) | set(self.registered))

    def _apply_pools(self, names: set[str]) -> None:
        names.discard("")
        if not names:
            return
        records, problems = self.snapshot.pools()
        for problem in problems:
            if problem not in self._problems:
                log.warning("registry: ignoring %s%s", self.prefix, problem)
        self._problems = set(problems)
        for name in sorted(names):
            pool = self.runtime.pools.get(name)
            if pool is None:
                if name in records and name not in self._unknown_pools:
                    self._unknown_pools.add(name)
                    log.warning(
                        "registry: pool %r is not in this process's config; its keys are ignored", name
                    )
                continue
            wanted = records.get(name, PoolRecords())
            static = self.static.get(name, {})
            owned = self.registered.setdefault(name, set())
            apply_ops(pool, plan(seen_in(pool), wanted, static, owned))
            owned.clear()
            owned.update(owned_after(wanted, static))
        self._notify()

    def _settle(self) -> None:
        unsure, self._unsure = self._unsure, []
        now = asyncio.get_running_loop().time()
        self._late = {k: v for k, v in self._late.items() if v[0] > now}
        for write in unsure:
            log.warning("registry: %s", settled(write, self.snapshot))
            if not applied(write, self.snapshot):
                self._late[write.key] = (now + LATE_WATCH, write)

    def _settle_late(self, key: str) -> None:
        until, write = self._late[key]
        if until < asyncio.get_running_loop().time():
            del self._late[key]
        elif applied(write, self.snapshot):
            del self._late[key]
            log.warning("registry: %s", settled(write, self.snapshot, late=True))

    # --- writing (the admin API) -------------------------------------------------------------
    async def _write(self, pool: str, key: str, value: bytes | None) -> None:
        known = self.snapshot.get(key)
        unsure = UnsureWrite(
            pool, key, value, self.snapshot.revision, known is not None and known[1] is not None
        )
        try:
            if value is None:
                revision = await self.client.delete(key)
            else:
                revision = await self.client.put(key, value)
        except EtcdError as exc:
            if exc.maybe_applied:
                self._unsure.append(unsure)
                self._restart_watch()  # a full read once etcd answers again settles it
                raise RegistryOutcomeUnknown(
                    f"the etcd registry did not answer ({exc}); outcome unknown; the registry will converge"
                ) from exc
            raise RegistryUnavailable(
                f"the etcd registry did not take the change ({exc}); nothing changed"
            ) from exc
        if self.snapshot.apply(key, revision, value):
            self._apply_pools({pool})

    async def register(self, pool: str, address: str, weight: int, meta: Mapping[str, str]) -> None:
        value = encode_registration(Registration(weight, dict(meta)))
        await self._write(pool, instance_key(self.prefix, pool, address), value)

    async def hold(self, pool: str, address: str, hold: Hold | None) -> None:
        value = None if hold is None else encode_hold(hold)
        await self._write(pool, hold_key(self.prefix, pool, address), value)

    async def set_weight(self, pool: str, address: str, weight: int) -> None:
        await self._write(pool, weight_key(self.prefix, pool, address), encode_weight(weight))

    def owns(self, pool: str, address: str) -> bool:
        return address in self.registered.get(pool, ())

    async def forget(self, pool: str, address: str) -> None:
        """The instance leaves the registry: its registration first (a hold left behind for a
        moment is harmless, a registration without its hold would take work), then the rest."""
        for key in (
            instance_key(self.prefix, pool, address),
            hold_key(self.prefix, pool, address),
            weight_key(self.prefix, pool, address),
        ):
            await self._write(pool, key, None)


def _static(config: Config) -> dict[str, dict[str, int]]:
    return {pc.name: {ic.address: ic.weight for ic in pc.instances} for pc in config.pools}


def make_service(config: Config, runtime: Runtime) -> EtcdRegistry:
    return EtcdRegistry(config, runtime)
