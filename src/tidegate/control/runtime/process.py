"""One tidegate process: every layer the config names, its pools, reload and graceful stop.

Signals: SIGHUP re-reads the config file and applies it whole or not at all: a bad file, a new
listener that cannot bind or a section that cannot run here (tidegate.service.SectionError) is
reported and changes nothing, since all of that is checked before anything changes.
SIGUSR2 starts a new process from the code installed now, which takes the listening sockets and
the operator state over (selfupgrade.py); this one then leaves. SIGTERM and SIGINT stop
gracefully (each service closes its listeners, finishes in-flight work up to the grace period,
then exits). The process prints one line per listener and then `tidegate: ready` on stderr,
which is what scripts and tests wait for.

The runtime binds every listener itself (through the kinds' `bind_sockets`) and keeps a
duplicate of each socket beside the service serving it, so a self-upgrade can send them all to
the new process whatever the service does with its own; a duplicate is closed when its service
stops listening, so a removed or stopped listener still refuses at once.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import platform
import signal
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import ProcessCollector

import tidegate
from tidegate.balancing.pool import Pool
from tidegate.config import Config, ConfigError, load_config
from tidegate.config.load import FileCheck
from tidegate.config.locate import Path as ConfigPath
from tidegate.control.runtime.carried import CarryingRegistry
from tidegate.control.runtime.handover_state import restore
from tidegate.control.runtime.pools import build_pools, reload_pools
from tidegate.control.runtime.sections import (
    REPEATABLE,
    Key,
    Section,
    SectionPlan,
    plan_sections,
    sections_of,
)
from tidegate.control.runtime.selfupgrade import (
    Inherited,
    Upgrader,
    follow_old,
    notify,
    reloading,
    remove_pid_file,
    write_pid_file,
)
from tidegate.fdlimit import raise_nofile
from tidegate.observe import process_log
from tidegate.observe.prometheus import BuildInfoCollector
from tidegate.service import C, Figures, Names, SectionError, Service

if TYPE_CHECKING:
    from tidegate.control.registry.service import EtcdRegistry

log = logging.getLogger("tidegate")


# Checks of the files a config names, run with its validation at start, reload and `tidegate check`:
# a certificate that cannot be served is a config error (file, line, key), and a reload with one
# is refused whole.
def _tls_files(config: Config) -> list[tuple[ConfigPath, str]]:
    if not any(h.tls is not None for h in config.http):
        return []  # a process without TLS never loads the TLS code
    from tidegate.http.tls import check_files

    return check_files(config)


FILE_CHECKS: tuple[FileCheck, ...] = (_tls_files,)

# section of the config → "module:factory"; a factory takes (section config, runtime) and
# returns a Service. Imported lazily so a process only loads the layers it runs.
_FACTORIES: dict[str, str] = {
    "admin": "tidegate.control.admin.service:make_service",
    "http": "tidegate.http.service:make_service",
    "tcp": "tidegate.tcp.service:make_service",
    "dns": "tidegate.dns.service:make_service",
    "lvs": "tidegate.lvs.service:make_service",
    "health": "tidegate.health.service:make_service",
    "registry": "tidegate.control.registry.service:make_service",
}


# Kinds whose listeners a reload binds before it changes anything: "module:function" taking the
# section's config and returning its bound sockets, which the factory then takes as `sockets=`.
_BINDERS: dict[str, str] = {
    "admin": "tidegate.control.admin.service:bind_sockets",
    "http": "tidegate.http.service:bind_sockets",
    "tcp": "tidegate.tcp.service:bind_sockets",
    "dns": "tidegate.dns.service:bind_sockets",
}


# Kinds with checks a reload runs before it changes anything (tidegate.service.SectionError):
# "module:function" taking the new section's config and the running one's (None if added).
_CHECKS: dict[str, str] = {
    "http": "tidegate.http.service:check_section",
    "lvs": "tidegate.lvs.service:check_section",
}


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


def _factory(section: str) -> Callable[..., Service]:
    return _load(_FACTORIES[section])


def _close(sockets: Iterable[list[socket.socket]]) -> None:
    for socks in sockets:
        for sock in socks:
            sock.close()


class Runtime:
    """Owns pools and services; the admin API and health checks reach the pools through it."""

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        grace: float = 30.0,
        *,
        argv: Sequence[str] = (),
        pid_file: str | None = None,
        inherited: Inherited | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.grace = grace
        self.pools: dict[str, Pool] = build_pools(config)
        self.services: list[Service] = []
        self.stopped = asyncio.Event()
        self.reloads = 0
        self._stopping = False
        self._started = False  # listeners bound, services started (/readyz)
        self._leaving: asyncio.Future[None] | None = None
        self.deferred_admin: Service | None = None
        # The section each running service follows, in step with self.services.
        self._sections: list[Section] = []
        self._retiring: set[asyncio.Task[None]] = set()  # services whose section a reload removed
        self.reload_lock = asyncio.Lock()
        # Duplicates of each service's listening sockets, in step with self.services.
        self._listeners: list[list[socket.socket]] = []
        self.pid_file = pid_file
        self.inherited = inherited  # this process is the new one of a self-upgrade
        # `argv`: how to start this process again (the `tidegate` arguments), for SIGUSR2.
        self.upgrader = Upgrader(self, argv) if argv else None
        # Every service registers its Prometheus collectors here; the admin API serves it.
        self.metrics = CarryingRegistry(auto_describe=True)
        ProcessCollector(registry=self.metrics)  # process_cpu_seconds_total, process_resident_memory_bytes…
        self.metrics.register(
            BuildInfoCollector(tidegate.__version__, tidegate.hot_path().split(" (")[0], platform.python_version())
        )
        self._names = Names()
        self._figures = Figures(self.metrics)
        # Pool → addresses registered through the admin API or the etcd registry: a reload keeps
        # them (control/runtime/pools.py).
        self.registered: dict[str, set[str]] = {}
        # The etcd registry while [registry] type = "etcd" runs: admin changes go through it.
        self.shared: EtcdRegistry | None = None

    # --- what services use of the process (tidegate.service.Host) --------------------------------
    def listener_name(self, kind: str) -> tuple[str, int]:
        return self._names.next(kind)

    def figures(self, kind: str, make: Callable[[], C]) -> C:
        return self._figures.get(kind, make)

    def _make(self, section: Section, sockets: list[socket.socket] | None = None) -> Service:
        factory = _factory(section.kind)
        svc = (
            factory(section.cfg, self, sockets=sockets) if sockets is not None else factory(section.cfg, self)
        )
        if section.kind in REPEATABLE:
            svc.index = section.position  # type: ignore[attr-defined]
        return svc

    async def start(self) -> None:
        self._sections = sections_of(self.config)
        inherited = self.inherited
        pending: dict[Key, list[list[socket.socket]]] = {}
        if inherited is not None:
            restore(inherited.snapshot, self.pools, self.registered)
            self.metrics.carry(inherited.counters)
            pending = {key: list(groups) for key, groups in inherited.sockets.items()}
        self.services, self._listeners = [], []
        try:
            for section in self._sections:
                socks = None
                if section.kind in _BINDERS:
                    mine = pending.get(section.key)
                    socks = mine.pop(0) if mine else _load(_BINDERS[section.kind])(section.cfg)
                self.services.append(self._make(section, socks))
                self._listeners.append([s.dup() for s in socks or ()])
        finally:
            _close(g for groups in pending.values() for g in groups)  # listeners the config dropped
        for svc, section in zip(self.services, self._sections, strict=True):
            if section.kind == "admin" and inherited is not None:
                # Started once the old process has stopped accepting and said where its counters
                # stand (follow_old): until then its admin API answers alone, so no scrape sees
                # a counter of this process before it carries the old one's on.
                self.deferred_admin = svc
                continue
            await svc.start()
            if svc.name == "health" and inherited is not None:
                svc.adopt(inherited.verdicts())  # type: ignore[attr-defined]

    async def start_deferred(self) -> None:
        svc, self.deferred_admin = self.deferred_admin, None
        if svc is not None and not self._stopping:
            await svc.start()

    async def reload(self) -> bool:
        # Two SIGHUPs in a row: the second reload starts after the first, never inside it.
        async with self.reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path, FILE_CHECKS)
        except ConfigError as exc:
            log.error("reload refused, config unchanged:\n%s", exc.render())
            return False
        wanted = sections_of(new)
        plan = plan_sections([s.key for s in self._sections], [s.key for s in wanted])
        # Bind every new listener first: one that cannot bind refuses the whole reload, as with
        # nginx and HAProxy, rather than leave a config running that is neither old nor new.
        bound: dict[int, list[socket.socket]] = {}
        for j in plan.added:
            section = wanted[j]
            if section.kind not in _BINDERS:
                continue
            try:
                bound[j] = _load(_BINDERS[section.kind])(section.cfg)
            except OSError as exc:
                _close(bound.values())
                log.error(
                    "reload refused, config unchanged: the new [%s] section cannot listen on %s: %s",
                    section.kind,
                    section.key[1],
                    exc.strerror or exc,
                )
                return False
        # Then everything else that can fail: only once nothing can, anything changes.
        problem = await self._check(wanted, plan)
        if problem is not None:
            _close(bound.values())
            log.error("reload refused, config unchanged: %s", problem)
            return False
        self.pools = reload_pools(self.pools, new, self.registered)
        self.config = new
        for i in plan.removed:
            _close([self._listeners[i]])
            await self._retire(self.services[i])
        services: list[Service | None] = [None] * len(wanted)
        listeners: list[list[socket.socket]] = [[] for _ in wanted]
        for i, j in plan.kept:
            listeners[j] = self._listeners[i]
            svc = services[j] = self.services[i]
            if wanted[j].kind in REPEATABLE:
                svc.index = wanted[j].position  # type: ignore[attr-defined]
            await svc.reload(new, self.pools)
        for j in plan.added:
            dups = [s.dup() for s in bound.get(j, ())]
            services[j] = await self._start_added(wanted[j], bound.get(j))
            if services[j] is None:
                _close([dups])
            listeners[j] = dups
        self._sections = [s for s, svc in zip(wanted, services, strict=True) if svc is not None]
        self._listeners = [ls for ls, svc in zip(listeners, services, strict=True) if svc is not None]
        self.services = [svc for svc in services if svc is not None]
        self.reloads += 1
        log.info("reloaded %s", self.config_path)
        log.info("reloaded")
        return True

    async def _check(self, wanted: list[Section], plan: SectionPlan) -> str | None:
        pairs = [(wanted[j], self._sections[i].cfg) for i, j in plan.kept]
        pairs += [(wanted[j], None) for j in plan.added]
        for section, running in pairs:
            target = _CHECKS.get(section.kind)
            if target is None:
                continue
            try:
                await asyncio.to_thread(_load(target), section.cfg, running)
            except SectionError as exc:
                return f"the {'new ' if running is None else ''}[{section.kind}] section: {exc}"
        return None

    async def _start_added(self, section: Section, sockets: list[socket.socket] | None) -> Service | None:
        try:
            svc = self._make(section, sockets)
            await svc.start()
        except (Exception, SystemExit) as exc:  # an [lvs] engine that cannot run exits at start
            _close([sockets or []])
            log.error("the new [%s] section did not start: %s", section.kind, exc)
            return None
        log.info("%s: started (its section is new in the config)", svc.name)
        return svc

    async def _retire(self, svc: Service) -> None:
        """Stop a service whose section left the config: its listeners close before the reload
        says it is done (a removed address refuses by then), what it has in flight finishes in
        the background (up to the grace period); the reload does not wait for that."""
        log.info(
            "%s: its section left the config; stopping (in-flight work finishes, up to %gs)",
            svc.name,
            self.grace,
        )
        stop_listening = getattr(svc, "stop_listening", None)
        if stop_listening is not None:
            try:
                await stop_listening()
            except Exception:
                log.exception("closing the listeners of %s", svc.name)

        async def retire() -> None:
            try:
                await svc.stop(self.grace)
            except Exception:
                log.exception("stopping %s", svc.name)
            log.info("%s: stopped", svc.name)

        task = asyncio.ensure_future(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # --- self-upgrade (selfupgrade.py) ---------------------------------------------------------
    def listening(self) -> list[tuple[Key, list[socket.socket]]]:
        """Every listening socket, by the section it serves, in the config's order."""
        return [(s.key, ls) for s, ls in zip(self._sections, self._listeners, strict=True) if ls]

    def health_verdicts(self) -> dict[str, dict[str, dict[str, Any]]]:
        for svc in self.services:
            if svc.name == "health":
                verdicts: dict[str, dict[str, dict[str, Any]]] = svc.verdicts()  # type: ignore[attr-defined]
                return verdicts
        return {}

    def reopen_logs(self) -> None:
        """SIGUSR1: every service opens its log files again (logrotate without copytruncate)."""
        for svc in self.services:
            reopen = getattr(svc, "reopen_logs", None)
            if reopen is not None:
                reopen()
        log.info("log files reopened")

    def not_ready(self) -> list[str]:
        """Why this process should not get traffic yet (/readyz): empty once every listener is
        bound, every service started and the first health verdicts are in, until it stops."""
        if self._stopping:
            return ["stopping"]
        if not self._started:
            return ["starting"]
        return [
            f"pool {pool}: first health checks under way"
            for svc in self.services
            if svc.name == "health"
            for pool in svc.unchecked_pools()  # type: ignore[attr-defined]
        ]

    async def self_upgrade(self) -> tuple[bool, str]:
        if self.upgrader is None:
            return False, "this process does not know how it was started"
        if self._stopping:
            return False, "stopping"
        return await self.upgrader.request()

    def leave(self) -> None:
        """The new process is current: stop as on SIGTERM, but it holds the listeners now."""
        self._leaving = asyncio.ensure_future(self._leave())

    async def _leave(self) -> None:
        # Every listener stops accepting first, the admin API's too (the new process answers
        # there now), not one service after another's drain; then the counters as they stand go
        # to the new process, and the services finish what they have.
        for svc, listeners in zip(self.services, self._listeners, strict=True):
            _close([listeners])
            stop_listening = getattr(svc, "stop_listening", None)
            if stop_listening is not None:
                try:
                    await stop_listening()
                except Exception:
                    log.exception("closing the listeners of %s", svc.name)
        self._listeners = [[] for _ in self.services]
        if self.upgrader is not None:
            await self.upgrader.report()
        await self.stop()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        upgraded = self.upgrader is not None and self.upgrader.committed
        if self.upgrader is not None:
            self.upgrader.cancel()
        if not upgraded:
            notify("STOPPING=1")
        # Traffic planes first, the admin API and health checks last so operators see the drain.
        for svc, listeners in reversed(list(zip(self.services, self._listeners, strict=True))):
            _close([listeners])
            try:
                await svc.stop(self.grace)
            except Exception:
                log.exception("stopping %s", svc.name)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if self.upgrader is not None:
            await self.upgrader.drained()
        if self.pid_file and not upgraded:
            remove_pid_file(self.pid_file, os.getpid())
        self.stopped.set()

    async def _reload_signalled(self) -> None:
        reloading()
        await self.reload()
        notify("READY=1")

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_signalled()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(self.self_upgrade()))
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        await self.start()
        # What start-up made (config, pools, imported modules) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it all.
        gc.freeze()
        self._started = True
        log.info("ready")
        following = None
        if self.inherited is not None:
            # The old process makes this one current (pid file, systemd) once it hears `ready`.
            following = loop.create_task(follow_old(self, self.inherited))
        else:
            if self.pid_file:
                write_pid_file(self.pid_file, os.getpid())
            notify("READY=1", f"MAINPID={os.getpid()}")
        await self.stopped.wait()
        if following is not None:
            following.cancel()


def run(
    config_path: str,
    grace: float = 30.0,
    *,
    argv: Sequence[str] = (),
    pid_file: str | None = None,
    handover_fd: int | None = None,
) -> int:
    """Run the config; `argv` starts this process again on SIGUSR2; `handover_fd`: this is the
    new process of a self-upgrade, and the old one is at the other end of that socket."""
    config = load_config(config_path, FILE_CHECKS)
    process_log.configure()  # as `tidegate --log-level --log-format` chose (the environment)
    before, now = raise_nofile()  # before any socket: workers inherit it
    if now != before:
        log.info("open files: %d (soft limit raised from %d to the hard limit)", now, before)
    else:
        log.info("open files: %d (the soft limit; the hard limit allows no more)", now)
    inherited = None
    if handover_fd is not None:
        from tidegate.control.runtime.selfupgrade import take_over

        inherited = take_over(handover_fd)
    rt = Runtime(config, str(Path(config_path)), grace, argv=argv, pid_file=pid_file, inherited=inherited)
    try:
        import uvloop

        uvloop.run(rt.serve_forever())
    except KeyboardInterrupt:
        pass
    return 0
