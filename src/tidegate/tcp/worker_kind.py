"""[[tcp]] with `workers = N` (tidegate.workers): the proxy in each worker process, and the main
process's sums of the workers' listener figures (shown as one listener's)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any

from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, TcpConfig
from tidegate.service import Host, Service
from tidegate.tcp.figures import ListenerFigures
from tidegate.tcp.metrics import TcpCollector
from tidegate.tcp.service import BACKLOG, TcpService
from tidegate.workers.parent import listening_sockets
from tidegate.workers.sums import increases

_COUNTS = ("accepted", "unplaced", "idle_closed", "drain_cut")


def report(svc: TcpService) -> dict[str, Any]:
    """A worker's listener figures, cumulative (what TcpTotals adds up)."""
    figs = svc.figures
    return {
        **{name: getattr(figs, name) for name in _COUNTS},
        "open": svc.open_count(),
        "instances": {a: {"opened": f.opened, "drain_cut": f.drain_cut} for a, f in figs.instances.items()},
    }


class TcpTotals:
    """The main process's side of a [[tcp]] section's workers: their figures added up, attached to
    the process's tcp collector like a listener of its own."""

    def __init__(self, host: Host, name: str, service: Any) -> None:
        self.name = name
        self.host = host
        self.service = service  # the WorkersService: its cfg follows reloads
        self.figures = ListenerFigures()
        self.now = asyncio.get_running_loop().time
        self._open: dict[int, int] = {}
        self._last: dict[int, Mapping[str, Any]] = {}
        self._collector = host.figures("tcp", TcpCollector)
        self._collector.services.append(self)

    @property
    def pool(self) -> Pool:
        return self.host.pools[self.service.cfg.pool]

    def open_count(self) -> int:
        return sum(self._open.values())

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        if not report:
            return
        inc = increases(report, self._last.get(worker))
        self._last[worker] = report
        self._open[worker] = int(report.get("open", 0))
        figs = self.figures
        for name in _COUNTS:
            setattr(figs, name, getattr(figs, name) + int(inc.get(name, 0)))
        now = self.now()
        for address, f in inc.get("instances", {}).items():
            fig = figs.of(address)
            fig.drain_cut += int(f.get("drain_cut", 0))
            opened = int(f.get("opened", 0))
            if opened:
                fig.opened += opened
                fig.sample(now)

    def reload(self, config: Config, pools: Mapping[str, Any]) -> None:
        pass  # reads the service's cfg when asked

    def forget(self, worker: int) -> None:
        self._open.pop(worker, None)  # its connections died with it; its counts stay counted

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        if pool != self.service.cfg.pool:
            return None
        now = self.now()
        figs = self.figures
        return {
            "listener": self.name,
            "connections": self.open_count(),
            "accepted": figs.accepted,
            "unplaced": figs.unplaced,
            "idle_closed": figs.idle_closed,
            "drain_cut": figs.drain_cut,
            "instances": {
                address: {
                    "connections_per_second": round(f.connections_per_second(now), 3),
                    "opened": f.opened,
                    "drain_cut": f.drain_cut,
                }
                for address, f in figs.instances.items()
            },
        }

    def close(self) -> None:
        if self in self._collector.services:
            self._collector.services.remove(self)


class TcpKind:
    name = "tcp"

    def section(self, doc: Mapping[str, Any]) -> TcpConfig:
        return TcpConfig.model_validate(doc)

    def config_of(self, section: TcpConfig) -> Config:
        return Config.model_construct(tcp=[section])

    def workers(self, section: TcpConfig) -> int:
        return section.workers

    def bind(self, section: TcpConfig, n: int) -> list[list[socket.socket]]:
        return [[s] for s in listening_sockets(section.listen, n, backlog=BACKLOG)]

    def after_reload(self, config: Config, current: TcpConfig, index: int, name: str) -> TcpConfig:
        if index >= len(config.tcp):
            return current
        new = config.tcp[index]
        # A worker's socket is bound by the main process: a new address needs a restart.
        return new if new.listen == current.listen else new.model_copy(update={"listen": current.listen})

    def make(self, section: TcpConfig, host: Host, sockets: list[socket.socket]) -> TcpService:
        return TcpService(section, host, sockets)

    def report(self, service: Any) -> dict[str, Any]:
        return report(service)

    def totals(self, host: Host, name: str, service: Service) -> TcpTotals:
        return TcpTotals(host, name, service)


KIND = TcpKind()
