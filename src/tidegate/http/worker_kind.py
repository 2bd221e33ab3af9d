"""[[http]] with `workers = N` (tidegate.workers): the gateway in each worker process."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from tidegate.config.model import Config, HttpConfig
from tidegate.http.section import section_after_reload
from tidegate.http.service import HttpService
from tidegate.service import Host, Service
from tidegate.workers.parent import listening_sockets


class HttpTotals:
    """What the main process adds up of its gateway workers: their idle upstream connections."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.idle: dict[int, dict[str, int]] = {}

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        self.idle[worker] = dict(report.get("idle", {}))

    def reload(self, config: Config, pools: Mapping[str, Any]) -> None:
        pass  # reads the service's cfg when asked

    def forget(self, worker: int) -> None:
        self.idle.pop(worker, None)

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        cfg: HttpConfig = self.service.cfg
        if pool != cfg.pool and all(r.pool != pool for r in cfg.routes):
            return None
        return {"idle_upstream_connections": sum(idle.get(pool, 0) for idle in self.idle.values())}

    def close(self) -> None:
        pass


class HttpKind:
    name = "http"

    def section(self, doc: Mapping[str, Any]) -> HttpConfig:
        return HttpConfig.model_validate(doc)

    def config_of(self, section: HttpConfig) -> Config:
        return Config.model_construct(http=[section])

    def workers(self, section: HttpConfig) -> int:
        return section.workers

    def bind(self, section: HttpConfig, n: int) -> list[list[socket.socket]]:
        return [[s] for s in listening_sockets(section.listen, n)]

    def after_reload(self, config: Config, current: HttpConfig, index: int, name: str) -> HttpConfig:
        return section_after_reload(config, current, index, name)

    def make(self, section: HttpConfig, host: Host, sockets: list[socket.socket]) -> HttpService:
        return HttpService(section, host, sock=sockets[0], announce=False)

    def report(self, service: Any) -> dict[str, Any]:
        svc: HttpService = service
        if svc.upstreams is None:
            return {}
        idle = {
            name: sum(len(svc.upstreams.idle.get(i, ())) for i in pool) for name, pool in svc.pools.items()
        }
        return {"idle": idle}

    def totals(self, host: Host, name: str, service: Service) -> HttpTotals:
        return HttpTotals(service)


KIND = HttpKind()
