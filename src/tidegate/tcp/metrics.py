"""Prometheus exposition of the TCP layer's own figures (figures.py), for every listener.

One collector serves all `[[tcp]]` listeners of a process (a registry refuses two collectors
with the same metric names). The shared per-instance counters (active, completed, bytes) are
exposed by the observe layer; these are the ones only a connection proxy has. Labels follow
observe.prometheus: `pool` and `instance` (the address), plus `listener` (tcp, tcp.1, …).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tidegate.balancing.pool import Pool
    from tidegate.tcp.figures import ListenerFigures


class Listener(Protocol):
    """What the collector reads of a listener: a TcpService, or the main process's sums of its
    workers' (tcp/worker_kind.py)."""

    name: str
    figures: ListenerFigures

    @property
    def pool(self) -> Pool: ...

    def now(self) -> float: ...

    def open_count(self) -> int: ...


class TcpCollector(Collector):
    def __init__(self) -> None:
        self.services: list[Listener] = []

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily(
            "tidegate_tcp_accepted_connections", "Client connections accepted", labels=["listener"]
        )
        unplaced = CounterMetricFamily(
            "tidegate_tcp_unplaced_connections",
            "Client connections closed because no instance could be connected",
            labels=["listener"],
        )
        idle = CounterMetricFamily(
            "tidegate_tcp_idle_closed_connections",
            "Connections closed by the idle timeout",
            labels=["listener"],
        )
        open_now = GaugeMetricFamily(
            "tidegate_tcp_open_connections", "Client connections open now", labels=["listener"]
        )
        opened = CounterMetricFamily(
            "tidegate_tcp_instance_opened_connections",
            "Connections relayed to an instance",
            labels=["listener", "pool", "instance"],
        )
        cut = CounterMetricFamily(
            "tidegate_tcp_instance_drain_cut_connections",
            "Connections closed because the instance's drain grace expired",
            labels=["listener", "pool", "instance"],
        )
        for svc in self.services:
            figs = svc.figures
            accepted.add_metric([svc.name], figs.accepted)
            unplaced.add_metric([svc.name], figs.unplaced)
            idle.add_metric([svc.name], figs.idle_closed)
            open_now.add_metric([svc.name], svc.open_count())
            for address, f in list(figs.instances.items()):
                labels = [svc.name, svc.pool.name, address]
                opened.add_metric(labels, f.opened)
                cut.add_metric(labels, f.drain_cut)
        yield from (accepted, unplaced, idle, open_now, opened, cut)
