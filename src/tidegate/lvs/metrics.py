"""Prometheus exposition of the director's per-real-server figures (what `ipvsadm -L --stats`
shows) and of its drops. The address label is `address` (Prometheus reserves `instance`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# (pool, address) → figures as in RsStats.as_dict(); plus reason → dropped frames.
FiguresSource = Callable[[], tuple[str, dict[str, dict[str, int]], dict[str, int]]]


class LvsCollector(Collector):
    """The director's figures, read from the newest attached [lvs] service's source."""

    def __init__(self) -> None:
        self.sources: list[FiguresSource] = []

    def collect(self) -> Iterator[Metric]:
        if not self.sources:
            return
        pool, per_server, dropped = self.sources[-1]()
        labels = ["pool", "address"]
        conns = GaugeMetricFamily(
            "tidegate_lvs_connections",
            "Connections in the director's table per real server (active = ESTABLISHED)",
            labels=[*labels, "state"],
        )
        scheduled = CounterMetricFamily(
            "tidegate_lvs_scheduled_connections", "Connections scheduled to the real server", labels=labels
        )
        packets = CounterMetricFamily(
            "tidegate_lvs_packets", "Packets forwarded, in = client to server", labels=[*labels, "direction"]
        )
        octets = CounterMetricFamily(
            "tidegate_lvs_bytes", "IP bytes forwarded, in = client to server", labels=[*labels, "direction"]
        )
        for address, f in per_server.items():
            conns.add_metric([pool, address, "active"], f["active"])
            conns.add_metric([pool, address, "inactive"], f["inactive"])
            scheduled.add_metric([pool, address], f["conns"])
            packets.add_metric([pool, address, "in"], f["in_packets"])
            packets.add_metric([pool, address, "out"], f["out_packets"])
            octets.add_metric([pool, address, "in"], f["in_bytes"])
            octets.add_metric([pool, address, "out"], f["out_bytes"])
        drops = CounterMetricFamily(
            "tidegate_lvs_dropped_packets", "Frames for the VIP the director dropped", labels=["reason"]
        )
        for reason, n in dropped.items():
            drops.add_metric([reason], n)
        yield from (conns, scheduled, packets, octets, drops)
