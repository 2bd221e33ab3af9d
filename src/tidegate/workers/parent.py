"""`workers = N`: N processes behind one address, figures summed here (the main process's side).

Theory of operation. The main process (the runtime) binds each worker's listening sockets on the
section's address with SO_REUSEPORT — the kernel spreads new connections (and, for DNS, datagrams)
over them — and starts one worker process per set (`tidegate.workers.child`), each with a
socketpair to talk over. The sockets stay open here too, so a worker that dies is restarted on the
same sockets without the address ever refusing (the kernel keeps queueing on them meanwhile). The
main process serves nothing itself; it keeps the pools (health checks, admin API, reloads) and
exchanges with each worker what wire.py describes: pool snapshots out, figures and drain signals
in. What differs between kinds (sockets, the service in a worker, its own figures) is the kind's
(kind.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from tidegate.accepting import AcceptCollector, AcceptTotals
from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.config.model import Config, split_address
from tidegate.service import Host
from tidegate.workers import wire
from tidegate.workers.kind import Totals, WorkerKind

log = logging.getLogger("tidegate.workers")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")

# How often the pools are compared with what the workers were last sent (seconds).
SYNC_INTERVAL = 0.05
RESTART_DELAY = 0.5
CLOSE_TIMEOUT = 5.0  # at most this long for the workers to stop accepting (one may be dying)


def listening_sockets(
    address: str, n: int, kind: int = socket.SOCK_STREAM, backlog: int = 2048
) -> list[socket.socket]:
    """n sockets bound to the same address with SO_REUSEPORT (port 0: one port for all);
    stream sockets listen, datagram sockets are only bound."""
    host, port = split_address(address)
    family, stype, proto, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=kind, flags=socket.AI_PASSIVE
    )[0]
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, stype, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(sockaddr)
            if stype == socket.SOCK_STREAM:
                s.listen(backlog)
            s.setblocking(False)
            sockaddr = s.getsockname()  # the port the first one got, for the others
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


class _Child:
    """One worker process and what it last reported."""

    def __init__(self, index: int, socks: list[socket.socket]) -> None:
        self.index = index
        self.socks = socks
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()  # the worker said it no longer accepts
        self.last: dict[str, dict[str, list[float]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.synced = -1  # the last pool snapshot the worker says it mirrors

    def send(self, msg: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(wire.frame(msg))


class WorkersService:
    """A section's service in the main process when it has `workers = N`."""

    def __init__(
        self, kind: WorkerKind, cfg: Any, runtime: Host, sockets: list[socket.socket] | None = None
    ) -> None:
        self.kind = kind
        self.cfg = cfg
        # One set per worker, flattened (as Service bind_sockets returns them); else start() binds.
        self.sockets = sockets
        self.runtime = runtime
        self.name, self.index = runtime.listener_name(kind.name)
        self.pools: Mapping[str, Pool] = runtime.pools
        self.children: list[_Child] = []
        self.totals: Totals = kind.totals(runtime, self.name, self)
        self.accept_totals = AcceptTotals(self.name, runtime.figures("accept", AcceptCollector))
        self.stopping = False
        self.address = ""
        self._versions: dict[str, int] = {}
        self.seq = 0  # numbers the pool snapshots sent; workers acknowledge the ones they mirror
        self._sync: asyncio.Task[None] | None = None

    # --- Service ------------------------------------------------------------------------------
    async def start(self) -> None:
        n = self.kind.workers(self.cfg)
        flat, self.sockets = self.sockets, None
        sets = _per_worker(flat, n) if flat else self.kind.bind(self.cfg, n)
        bound = sets[0][-1].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.address = f"{shown}:{bound[1]}"
        self.children = [_Child(i, s) for i, s in enumerate(sets)]
        self._versions = self._pool_versions()
        for child in self.children:
            child.task = asyncio.get_running_loop().create_task(self._supervise(child))
        try:
            async with asyncio.timeout(60):
                for child in self.children:
                    await child.ready.wait()
        except TimeoutError:
            await self.stop(0)
            raise RuntimeError(f"{self.name}: the worker processes did not start") from None
        log.info("%s: %d worker processes on %s", self.name, len(self.children), self.address)
        announce.info(f"{self.name} listening on {self.address}")
        self._sync = asyncio.get_running_loop().create_task(self._sync_pools())

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        cfg = self.kind.after_reload(config, self.cfg, self.index, self.name)
        if self.kind.workers(cfg) != self.kind.workers(self.cfg):
            log.warning(
                "%s: a new number of workers needs a restart; keeping %d", self.name, len(self.children)
            )
        self.cfg = cfg
        self.pools = pools
        self.totals.reload(config, pools)
        self._versions = self._pool_versions()
        self.seq += 1
        msg = {
            "type": "reload",
            "seq": self.seq,
            "section": self._section(),
            "pools": wire.pool_snapshot(pools),
            "shared": self._shared(),
        }
        for child in self.children:
            child.send(msg)

    def reopen_logs(self) -> None:
        """SIGUSR1 to the main process: each worker opens its log files again (child.py)."""
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.send_signal(signal.SIGUSR1)

    async def stop_listening(self) -> None:
        """The address refuses from now on: every worker stops accepting, then the sockets kept
        here close (while a copy is open, the kernel would queue connections nobody accepts)."""
        if self.stopping:
            return
        self.stopping = True  # no restarts: a new worker would need the socket
        asking = [c for c in self.children if c.writer is not None and c.ready.is_set()]
        for child in asking:
            child.send({"type": "close"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for child in asking:
                    await child.closed.wait()
        for child in self.children:
            for sock in child.socks:
                sock.close()

    async def stop(self, grace: float) -> None:
        await self.stop_listening()
        if self._sync is not None:
            self._sync.cancel()
        for child in self.children:
            child.send({"type": "stop", "grace": grace})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace + 5):
                await asyncio.gather(*(c.task for c in self.children if c.task is not None))
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.kill()
            if child.task is not None:
                child.task.cancel()
            for sock in child.socks:
                sock.close()
        self.totals.close()
        self.accept_totals.close()

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        described = self.totals.describe_pool(pool)
        if described is None:
            return None
        return {
            **described,
            "listen": self.address,
            # Every worker mirrors the pools as they are now (operator changes have reached them).
            "workers_in_sync": self._pool_versions() == self._versions
            and all(c.synced == self.seq for c in self.children),
            "workers": [
                {
                    "pid": c.proc.pid if c.proc is not None and c.proc.returncode is None else None,
                    "requests": int(sum(v[1] for v in c.last.get(pool, {}).values())),
                }
                for c in self.children
            ],
        }

    # --- the workers ----------------------------------------------------------------------------
    def _section(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.cfg.model_dump(mode="json")
        return doc

    def _shared(self) -> dict[str, Any]:
        """What every worker must agree on and the main process decides, from the kind's totals
        (a `shared()` method: the DNS serial); sent with each start, pools and reload message."""
        shared = getattr(self.totals, "shared", None)
        return shared() if shared is not None else {}

    def _pool_versions(self) -> dict[str, int]:
        return {name: p.version for name, p in self.pools.items()}

    async def _supervise(self, child: _Child) -> None:
        """Run the child's worker process; start it again if it dies while the service runs."""
        while True:
            try:
                await self._run_child(child)
            except (OSError, ValueError) as exc:
                log.error("%s worker %d: %s", self.name, child.index, exc)
            if self.stopping:
                return
            code = child.proc.returncode if child.proc is not None else None
            log.error("%s worker %d exited (%s); starting it again", self.name, child.index, code)
            self._forget(child)
            child.synced = -1
            await asyncio.sleep(RESTART_DELAY)

    async def _run_child(self, child: _Child) -> None:
        child.closed.clear()
        here, there = socket.socketpair()
        fds = [s.fileno() for s in child.socks]
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tidegate.workers.child",
                "--kind",
                self.kind.name,
                "--listen-fds",
                ",".join(map(str, fds)),
                "--control-fd",
                str(there.fileno()),
                "--name",
                f"{self.name}.w{child.index}",
                pass_fds=(*fds, there.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                env=dict(os.environ),
            )
        finally:
            there.close()
        reader, child.writer = await asyncio.open_connection(sock=here)
        child.send(
            {
                "type": "start",
                "seq": self.seq,
                "index": self.index,
                "section": self._section(),
                "pools": wire.pool_snapshot(self.pools),
                "shared": self._shared(),
            }
        )
        try:
            while True:
                msg = await wire.read_message(reader)
                if msg is None:
                    break
                self._received(child, msg)
        finally:
            child.closed.set()  # a worker that is gone accepts nothing
            child.writer.close()
            child.writer = None
            await child.proc.wait()

    def _received(self, child: _Child, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "figures":
            self._add_figures(child, msg["counters"])
            self.totals.add(child.index, msg.get("own", {}))
            self.accept_totals.add(child.index, msg.get("accept", {}))
            wire.replay_results(self.pools, msg.get("passive", ()))
        elif kind == "state":
            pool = self.pools.get(msg["pool"])
            inst = pool.get(msg["address"]) if pool is not None else None
            if pool is not None and inst is not None:
                pool.set_state(inst, State(msg["state"]), msg["cause"])
        elif kind == "synced":
            child.synced = int(msg["seq"])
        elif kind == "ready":
            child.ready.set()
        elif kind == "closed":
            child.closed.set()

    def _add_figures(self, child: _Child, counters: dict[str, dict[str, list[float]]]) -> None:
        for pool_name, by_address in counters.items():
            pool = self.pools.get(pool_name)
            last = child.last.setdefault(pool_name, {})
            for address, vec in by_address.items():
                inst = pool.get(address) if pool is not None else None
                if inst is not None:
                    wire.add_increase(inst.counters, vec, last.get(address))
                last[address] = vec
            for gone in [a for a in last if a not in by_address]:
                del last[gone]

    def _forget(self, child: _Child) -> None:
        """A dead worker's requests are no longer in service: take its `active` off the sums."""
        for pool_name, by_address in child.last.items():
            pool = self.pools.get(pool_name)
            for address, vec in by_address.items():
                inst = pool.get(address) if pool is not None else None
                if inst is not None:
                    inst.counters.active -= int(vec[0])
        child.last = {}
        self.totals.forget(child.index)

    async def _sync_pools(self) -> None:
        """Push the pools to every worker whenever one of them changed (health, admin, ramps)."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            versions = self._pool_versions()
            if versions != self._versions:
                self._versions = versions
                self.seq += 1
                msg = {
                    "type": "pools",
                    "seq": self.seq,
                    "pools": wire.pool_snapshot(self.pools),
                    "shared": self._shared(),
                }
                for child in self.children:
                    child.send(msg)


def _per_worker(flat: list[socket.socket], n: int) -> list[list[socket.socket]]:
    """Service.bind_sockets' flat list back into one set per worker."""
    size = len(flat) // n
    return [flat[i * size : (i + 1) * size] for i in range(n)]
