"""[[http]] with `workers = N` (tidegate.workers): the gateway in each worker process."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tidegate.config.model import Config, HttpConfig
from tidegate.http.section import section_after_reload
from tidegate.http.service import HttpService
from tidegate.http.tls_metrics import TlsCollector
from tidegate.service import Host, Service
from tidegate.workers.parent import listening_sockets
from tidegate.workers.sums import increases


@dataclass
class Handshakes:
    handshakes: int = 0
    failed: int = 0


class HttpTotals:
    """What the main process adds up of its gateway workers: their idle upstream connections and
    TLS handshakes (shown in /metrics as the listener's)."""

    def __init__(self, host: Host, name: str, service: Any) -> None:
        self.name = name
        self.service = service
        self.idle: dict[int, dict[str, int]] = {}
        self._tls = Handshakes()
        self.answers: dict[int, int] = {}
        self._last: dict[int, Mapping[str, Any]] = {}
        self._collector = host.figures("http_tls", TlsCollector)
        self._collector.listeners.append(self)

    @property
    def tls(self) -> Handshakes | None:
        return self._tls if self.service.cfg.tls is not None else None

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        self.idle[worker] = dict(report.get("idle", {}))
        answers = report.get("answers")
        if answers:
            inc = increases(answers, self._last.get(worker, {}).get("answers"))
            for code, n in inc.items():
                self.answers[int(code)] = self.answers.get(int(code), 0) + int(n)
        counts = report.get("tls")
        if counts:
            inc = increases(counts, self._last.get(worker, {}).get("tls"))
            self._tls.handshakes += int(inc.get("handshakes", 0))
            self._tls.failed += int(inc.get("failed", 0))
        self._last[worker] = report

    def reload(self, config: Config, pools: Mapping[str, Any]) -> None:
        pass  # reads the service's cfg when asked

    def forget(self, worker: int) -> None:
        self.idle.pop(worker, None)

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        cfg: HttpConfig = self.service.cfg
        if pool != cfg.pool and all(r.pool != pool for r in cfg.routes):
            return None
        doc: dict[str, object] = {
            "idle_upstream_connections": sum(idle.get(pool, 0) for idle in self.idle.values())
        }
        tls = self.tls
        if tls is not None:
            doc["tls"] = {"handshakes": tls.handshakes, "handshake_failures": tls.failed}
        return doc

    def close(self) -> None:
        if self in self._collector.listeners:
            self._collector.listeners.remove(self)


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
        out: dict[str, Any] = {"idle": idle, "answers": {str(k): v for k, v in svc.answers.items()}}
        if svc.tls is not None:
            out["tls"] = {"handshakes": svc.tls.handshakes, "failed": svc.tls.failed}
        return out

    def totals(self, host: Host, name: str, service: Service) -> HttpTotals:
        return HttpTotals(host, name, service)


KIND = HttpKind()
