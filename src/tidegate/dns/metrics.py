"""Prometheus exposition of the DNS figures (registered in the runtime's registry)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tidegate.dns.zone import Zone


class ZoneSource(Protocol):
    """A DnsService, or the main process's zone for its [dns] workers (dns/worker_kind.py)."""

    zone: Zone

    def cache_entries(self) -> int:
        """Rendered responses kept: the zone's, or with workers the sum of theirs."""
        ...


class DnsCollector(Collector):
    """The [dns] service's figures; the newest attached service is the one serving (a reload that
    moves the listener attaches the new one before the old one detaches)."""

    def __init__(self) -> None:
        self.services: list[ZoneSource] = []

    def collect(self) -> Iterator[Metric]:
        if not self.services:
            return
        source = self.services[-1]
        zone = source.zone
        figs = zone.figures
        queries = CounterMetricFamily(
            "tidegate_dns_queries", "A/AAAA/ANY queries per record", labels=["record"]
        )
        answers = CounterMetricFamily(
            "tidegate_dns_answers", "times an address was handed out", labels=["record", "address"]
        )
        fail_open = CounterMetricFamily(
            "tidegate_dns_fail_open", "answers given with down instances (none eligible)", labels=["record"]
        )
        for name, fig in sorted(figs.records.items()):
            queries.add_metric([name], fig.queries)
            fail_open.add_metric([name], fig.fail_open)
            for ip, n in sorted(fig.answers.items()):
                answers.add_metric([name, ip], n)
        yield from (queries, answers, fail_open)
        responses = CounterMetricFamily("tidegate_dns_responses", "responses by rcode", labels=["rcode"])
        for rcode, n in sorted(figs.responses.items()):
            responses.add_metric([rcode], n)
        yield responses
        packets = CounterMetricFamily("tidegate_dns_packets", "packets received", labels=["transport"])
        packets.add_metric(["udp"], figs.udp)
        packets.add_metric(["tcp"], figs.tcp)
        yield packets
        yield CounterMetricFamily("tidegate_dns_truncated", "UDP answers sent with TC", value=figs.truncated)
        yield CounterMetricFamily("tidegate_dns_malformed", "packets answered FORMERR", value=figs.formerr)
        yield CounterMetricFamily(
            "tidegate_dns_dropped",
            "packets left unanswered: too short, not a query, cut short, or no room to send the answer",
            value=figs.dropped,
        )
        yield CounterMetricFamily(
            "tidegate_dns_internal_errors",
            "exceptions in tidegate while answering",
            value=figs.internal_errors,
        )
        cache = CounterMetricFamily(
            "tidegate_dns_packet_cache", "plain queries by packet-cache outcome", labels=["result"]
        )
        cache.add_metric(["hit"], figs.cache_hits)
        cache.add_metric(["miss"], figs.cache_misses)
        yield cache
        yield GaugeMetricFamily(
            "tidegate_dns_packet_cache_entries", "rendered responses kept", value=source.cache_entries()
        )
        yield GaugeMetricFamily("tidegate_dns_soa_serial", "the zone's SOA serial", value=zone.serial)
