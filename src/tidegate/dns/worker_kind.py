"""[dns] with `workers = N` (tidegate.workers): the server in each worker process on its own
SO_REUSEPORT UDP and TCP sockets, and the main process's sums of the workers' figures.

The main process keeps a zone of its own that serves no packet: it follows the same pools, so
GET /api/pools (which addresses are in the answers, the serial) and /metrics read from it, with
the counts the workers report added into its figures. Its serial is the one: every message that
starts a worker or brings it pools or a reload carries it (`DnsTotals.shared`), and the workers'
zones follow it rather than count changes themselves (each would count what it noticed, from its
own start).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from typing import Any

from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, DnsConfig, split_address
from tidegate.dns.describe import describe_pool
from tidegate.dns.figures import Figures
from tidegate.dns.metrics import DnsCollector
from tidegate.dns.service import DnsService, next_zone, size_udp_buffer
from tidegate.dns.zone import Zone
from tidegate.service import Host, Service
from tidegate.workers.parent import listening_sockets
from tidegate.workers.sums import increases

_COUNTS = ("udp", "tcp", "truncated", "formerr", "dropped", "internal_errors", "cache_hits", "cache_misses")
_BIND_TRIES = 20


def report(figs: Figures, now: float, cache_entries: int = 0) -> dict[str, Any]:
    """A worker's DNS figures: cumulative counts, how long ago each address was handed out, and
    the size of its packet cache."""
    return {
        "cache_entries": cache_entries,
        "counts": {
            **{name: getattr(figs, name) for name in _COUNTS},
            "responses": dict(figs.responses),
            "records": {
                name: {"queries": f.queries, "fail_open": f.fail_open, "answers": dict(f.answers)}
                for name, f in figs.records.items()
            },
        },
        "ago": {
            name: {ip: round(now - t, 3) for ip, t in f.last_answered.items()}
            for name, f in figs.records.items()
        },
    }


def add_report(figs: Figures, inc: Mapping[str, Any], ago: Mapping[str, Any], now: float) -> None:
    """Add a report's increases (workers.sums.increases of its counts) into the main process's
    figures; queries feed the per-record rate as they arrive."""
    for name in _COUNTS:
        setattr(figs, name, getattr(figs, name) + int(inc.get(name, 0)))
    for rcode, n in inc.get("responses", {}).items():
        figs.responses[rcode] += int(n)
    for name, rec in inc.get("records", {}).items():
        fig = figs.record(name)
        queries = int(rec.get("queries", 0))
        fig.queries += queries
        if queries:
            fig.rate.add(queries)
        fig.fail_open += int(rec.get("fail_open", 0))
        for ip, n in rec.get("answers", {}).items():
            fig.answers[ip] += int(n)
    for name, by_ip in ago.items():
        fig = figs.record(name)
        for ip, seconds in by_ip.items():
            t = now - float(seconds)
            if t > fig.last_answered.get(ip, float("-inf")):
                fig.last_answered[ip] = t


class DnsTotals:
    def __init__(self, host: Host, name: str, service: Any) -> None:
        self.name = name
        self.host = host
        self.service = service  # the WorkersService: its cfg follows reloads
        self.cfg: DnsConfig = service.cfg
        self.figures = Figures()
        self.zone = Zone(self.cfg, host.pools, self.figures)
        self._last: dict[int, Mapping[str, Any]] = {}
        self._entries: dict[int, int] = {}  # each worker's packet cache size, last reported
        self._collector = host.figures("dns", DnsCollector)
        self._collector.services.append(self)

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        counts = report.get("counts")
        if not counts:
            return
        self._entries[worker] = int(report.get("cache_entries", 0))
        inc = increases(counts, self._last.get(worker))
        self._last[worker] = counts
        add_report(self.figures, inc, report.get("ago", {}), self.figures.clock())

    def forget(self, worker: int) -> None:
        # Counts stay counted; a restarted worker's start afresh (workers.sums). Its cache is gone.
        self._entries.pop(worker, None)

    def cache_entries(self) -> int:
        return sum(self._entries.values())

    def shared(self) -> dict[str, Any]:
        """What every worker's zone takes from this one (DnsService.apply_shared): the serial,
        brought up to date with the pools first."""
        self.zone.refresh()
        return {"serial": self.zone.serial}

    def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        cfg = self.service.cfg
        self.zone = next_zone(self.zone, self.cfg, cfg, pools)
        self.cfg = cfg

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        return describe_pool(self.zone, pool)

    def close(self) -> None:
        if self in self._collector.services:
            self._collector.services.remove(self)


class DnsKind:
    name = "dns"

    def section(self, doc: Mapping[str, Any]) -> DnsConfig:
        return DnsConfig.model_validate(doc)

    def config_of(self, section: DnsConfig) -> Config:
        return Config.model_construct(dns=section)

    def workers(self, section: DnsConfig) -> int:
        return section.workers

    def bind(self, section: DnsConfig, n: int) -> list[list[socket.socket]]:
        """A UDP and a TCP socket per worker, all on one port (port 0: UDP picks it, and when
        another process holds that TCP port, try again)."""
        _, port = split_address(section.listen)
        for attempt in range(_BIND_TRIES):
            udp = listening_sockets(section.listen, n, socket.SOCK_DGRAM)
            for s in udp:
                size_udp_buffer(s)
            bound = udp[0].getsockname()
            address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
            try:
                tcp = listening_sockets(address, n, socket.SOCK_STREAM, backlog=128)
            except OSError as exc:
                for s in udp:
                    s.close()
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_TRIES - 1:
                    raise
                continue
            return [[u, t] for u, t in zip(udp, tcp, strict=True)]
        raise AssertionError("unreachable")

    def after_reload(self, config: Config, current: DnsConfig, index: int, name: str) -> DnsConfig:
        new = config.dns
        if new is None:
            return current
        return new if new.listen == current.listen else new.model_copy(update={"listen": current.listen})

    def make(self, section: DnsConfig, host: Host, sockets: list[socket.socket]) -> DnsService:
        return DnsService(section, host, sockets)

    def report(self, service: Any) -> dict[str, Any]:
        svc: DnsService = service
        return report(svc.zone.figures, svc.zone.figures.clock(), svc.cache_entries())

    def totals(self, host: Host, name: str, service: Service) -> DnsTotals:
        return DnsTotals(host, name, service)


KIND = DnsKind()
