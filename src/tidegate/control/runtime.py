"""One tidegate process: every layer the config names, its pools, reload and graceful stop.

Signals: SIGHUP re-reads the config file; a bad file is reported and changes nothing. SIGTERM and
SIGINT stop gracefully (each service closes its listeners, finishes in-flight work up to the
grace period, then exits). The process prints one line per listener and then `tidegate: ready`
on stderr, which is what scripts and tests wait for.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tidegate.balancing.pool import Pool
from tidegate.config import Config, ConfigError, load_config
from tidegate.control.pools import build_pools, reload_pools
from tidegate.service import Service

log = logging.getLogger("tidegate")

# section of the config → "module:factory"; a factory takes (section config, runtime) and
# returns a Service. Imported lazily so a process only loads the layers it runs.
_FACTORIES: dict[str, str] = {
    "admin": "tidegate.control.admin:make_service",
    "http": "tidegate.http.service:make_service",
    "tcp": "tidegate.tcp.service:make_service",
    "dns": "tidegate.dns.service:make_service",
    "lvs": "tidegate.lvs.service:make_service",
    "health": "tidegate.health.service:make_service",
}


def _factory(section: str) -> Callable[..., Service]:
    module, _, attr = _FACTORIES[section].partition(":")
    factory: Callable[..., Service] = getattr(importlib.import_module(module), attr)
    return factory


class Runtime:
    """Owns pools and services; the admin API and health checks reach the pools through it."""

    def __init__(self, config: Config, config_path: str | None = None, grace: float = 30.0) -> None:
        self.config = config
        self.config_path = config_path
        self.grace = grace
        self.pools: dict[str, Pool] = build_pools(config)
        self.services: list[Service] = []
        self.stopped = asyncio.Event()
        self.reloads = 0
        self._stopping = False
        # Every service registers its Prometheus collectors here; the admin API serves it.
        self.metrics = CollectorRegistry(auto_describe=True)
        self.extra: dict[str, Any] = {}  # services share objects here

    def _make_services(self) -> list[Service]:
        cfg = self.config
        out: list[Service] = []
        if cfg.pools:
            out.append(_factory("health")(cfg, self))
        if cfg.admin is not None:
            out.append(_factory("admin")(cfg.admin, self))
        for h in cfg.http:
            out.append(_factory("http")(h, self))
        for t in cfg.tcp:
            out.append(_factory("tcp")(t, self))
        if cfg.dns is not None:
            out.append(_factory("dns")(cfg.dns, self))
        if cfg.lvs is not None:
            out.append(_factory("lvs")(cfg.lvs, self))
        return out

    async def start(self) -> None:
        self.services = self._make_services()
        for svc in self.services:
            await svc.start()

    async def reload(self) -> bool:
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, config unchanged:\n%s", exc.render())
            return False
        self.pools = reload_pools(self.pools, new, self.extra.get("registered"))
        self.config = new
        for svc in self.services:
            await svc.reload(new, self.pools)
        self.reloads += 1
        log.info("reloaded %s", self.config_path)
        print("tidegate: reloaded", file=sys.stderr, flush=True)
        return True

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # Traffic planes first, the admin API and health checks last so operators see the drain.
        for svc in reversed(self.services):
            try:
                await svc.stop(self.grace)
            except Exception:
                log.exception("stopping %s", svc.name)
        self.stopped.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        await self.start()
        print("tidegate: ready", file=sys.stderr, flush=True)
        await self.stopped.wait()


def run(config_path: str, grace: float = 30.0) -> int:
    config = load_config(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = Runtime(config, str(Path(config_path)), grace)
    try:
        import uvloop

        uvloop.run(rt.serve_forever())
    except KeyboardInterrupt:
        pass
    return 0
