"""Prometheus exposition of the per-instance figures, read live at scrape time.

A custom Collector instead of prometheus_client's Counter/Gauge objects: the data planes bump
plain ints in `Counters` on the hot path, and this turns them into metric families only when
someone scrapes. Names follow prometheus_client's conventions: counters get `_total` appended by
the library, durations are in `_seconds`, every series carries the labels `pool` and `instance`.

This layer knows nothing of pools: the layer that owns them passes a function returning one
`InstanceView` per instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tidegate.observe.counters import LATENCY_BOUNDS, Counters

LABELS = ("pool", "instance")
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")  # Counters.status_counts, in order


class InstanceView(NamedTuple):
    pool: str
    address: str
    counters: Counters
    state: str
    weight: float
    effective_weight: float
    iops: float


def histogram_buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs from the per-bucket counts of Counters.latency_counts."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(LATENCY_BOUNDS, counts, strict=False):
        running += n
        out.append((repr(float(bound)), running))  # "0.005", "1.0": what prometheus_client writes
    running += counts[len(LATENCY_BOUNDS)]
    out.append(("+Inf", running))
    return out


class InstanceCollector(Collector):
    def __init__(self, views: Callable[[], Iterable[InstanceView]], states: Sequence[str]) -> None:
        self._views = views
        self._states = tuple(states)

    def describe(self) -> list[Metric]:
        # Listing the families without reading pools lets the registry check for name clashes.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self._views()))

    def _families(self, views: Iterable[InstanceView] = ()) -> list[Metric]:
        requests = CounterMetricFamily(
            "tidegate_instance_requests", "Requests (connections for L4) completed.", labels=LABELS
        )
        active = GaugeMetricFamily(
            "tidegate_instance_active_requests",
            "Requests (connections for L4) in service now.",
            labels=LABELS,
        )
        received = CounterMetricFamily(
            "tidegate_instance_received_bytes",
            "Bytes received from clients for the instance (request bodies; L4: client to instance).",
            labels=LABELS,
        )
        sent = CounterMetricFamily(
            "tidegate_instance_sent_bytes",
            "Bytes sent to clients from the instance (responses; L4: instance to client).",
            labels=LABELS,
        )
        # The 0.1 names, kept for one release (docs/metrics.md).
        bytes_in = CounterMetricFamily(
            "tidegate_instance_bytes_in", "Deprecated: tidegate_instance_received_bytes_total.", labels=LABELS
        )
        bytes_out = CounterMetricFamily(
            "tidegate_instance_bytes_out", "Deprecated: tidegate_instance_sent_bytes_total.", labels=LABELS
        )
        failures = CounterMetricFamily(
            "tidegate_instance_failures", "Attempts on the instance that failed.", labels=LABELS
        )
        retries = CounterMetricFamily(
            "tidegate_instance_retries",
            "Attempts on the instance that retried a failed attempt elsewhere.",
            labels=LABELS,
        )
        latency = HistogramMetricFamily(
            "tidegate_instance_response_seconds",
            "Time from sending the request to the instance to the end of its response.",
            labels=LABELS,
        )
        responses = CounterMetricFamily(
            "tidegate_instance_responses",
            "HTTP responses the instance gave to clients, by status class (code: 1xx to 5xx).",
            labels=(*LABELS, "code"),
        )
        state = GaugeMetricFamily(
            "tidegate_instance_state",
            "1 for the state the instance is in, 0 for the others.",
            labels=(*LABELS, "state"),
        )
        weight = GaugeMetricFamily(
            "tidegate_instance_weight", "Weight set by config or operator.", labels=LABELS
        )
        effective = GaugeMetricFamily(
            "tidegate_instance_effective_weight",
            "Weight the schedulers use now (0 when out of rotation, ramped in slow start).",
            labels=LABELS,
        )
        for v in views:
            labels = [v.pool, v.address]
            c = v.counters
            requests.add_metric(labels, c.completed)
            active.add_metric(labels, c.active)
            received.add_metric(labels, c.bytes_in)
            sent.add_metric(labels, c.bytes_out)
            bytes_in.add_metric(labels, c.bytes_in)
            bytes_out.add_metric(labels, c.bytes_out)
            failures.add_metric(labels, c.failures)
            retries.add_metric(labels, c.retries)
            latency.add_metric(labels, histogram_buckets(c.latency_counts), c.latency_sum)
            for k, n in enumerate(c.status_counts):
                if n:
                    responses.add_metric([*labels, _CLASSES[k]], n)
            for s in self._states:
                state.add_metric([*labels, s], 1.0 if s == v.state else 0.0)
            weight.add_metric(labels, v.weight)
            effective.add_metric(labels, v.effective_weight)
        return [
            requests,
            active,
            received,
            sent,
            bytes_in,
            bytes_out,
            failures,
            retries,
            latency,
            responses,
            state,
            weight,
            effective,
        ]


class BuildInfoCollector(Collector):
    """tidegate_build_info: 1, with the version and how the hot path runs as labels."""

    def __init__(self, version: str, hot_path: str, python: str) -> None:
        self._labels = [version, hot_path, python]

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "tidegate_build_info",
            "1; the labels say which tidegate runs and whether its hot path is compiled.",
            labels=("version", "hot_path", "python"),
        )
        info.add_metric(self._labels, 1.0)
        yield info
