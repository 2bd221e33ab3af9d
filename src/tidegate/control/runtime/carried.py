"""Prometheus counters that carry on across a self-upgrade.

Theory of operation. The instances' figures travel in the state snapshot and are seeded into the
new process's Counters (handover_state.py). Every other counter in /metrics — a listener's
accepted connections, DNS queries by rcode, the director's packets — is computed by its
collector from objects of the process that serves it, and would start again from 0 in the new
process, which a Prometheus `rate()` reads as a counter reset. So the old process sends the value
of every such counter sample it exposes (when it hands over, and again once it has drained), and
the new process adds those values to its own samples of the same name and labels from then on
(a sample it does not have yet — a TCP listener's figures for an instance it has not used — is
shown with the carried value alone). A process that was itself started by an upgrade exposes
the sums, so the values chain on.

`counter_values` and `add_carried` are pure (metric families in, samples out); `CarryingRegistry`
is the runtime's CollectorRegistry with the addition applied at collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.samples import Sample

# Seeded through the instances' Counters instead (handover_state.py).
SEEDED_PREFIX = "tidegate_instance_"
# Not carried: seeded instead, or the process's own (process_cpu_seconds_total is this process's).
NOT_CARRIED = (SEEDED_PREFIX, "process_")
_CUMULATIVE = ("counter", "histogram")
_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket")


def _key(sample: Sample) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}"


def _carried(metric: Metric, sample: Sample) -> bool:
    # `_created` is a timestamp, not a count; a histogram's `_sum` and buckets add up like counts.
    return (
        metric.type in _CUMULATIVE
        and not metric.name.startswith(NOT_CARRIED)
        and not sample.name.endswith("_created")
    )


# A carried sample: [sample name, labels, value], keyed by name and labels (JSON-able).
Carried = Mapping[str, tuple[str, Mapping[str, str], float]]


def counter_values(metrics: Iterable[Metric]) -> dict[str, tuple[str, dict[str, str], float]]:
    """Every cumulative sample, keyed by name and labels."""
    return {_key(s): (s.name, dict(s.labels), s.value) for m in metrics for s in m.samples if _carried(m, s)}


def add_carried(metrics: Iterable[Metric], carried: Carried) -> Iterator[Metric]:
    """The families with the carried values added to their samples of the same name and labels,
    and the carried samples of a family that it does not have (yet)."""
    for m in metrics:
        if carried and m.type in _CUMULATIVE and not m.name.startswith(NOT_CARRIED):
            seen: set[str] = set()
            samples = []
            for s in m.samples:
                if _carried(m, s):
                    key = _key(s)
                    seen.add(key)
                    hit = carried.get(key)
                    s = s._replace(value=s.value + hit[2]) if hit is not None else s
                samples.append(s)
            for key, (name, labels, value) in carried.items():
                if (
                    key not in seen
                    and name[: len(m.name)] == m.name
                    and name[len(m.name) :] in ("", *_SUFFIXES)
                ):
                    samples.append(Sample(name, dict(labels), value))
            m.samples = samples
        yield m


class CarryingRegistry(CollectorRegistry):
    """The runtime's registry: what it collects includes the counters a previous process handed on."""

    def __init__(self, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self.carried: dict[str, tuple[str, dict[str, str], float]] = {}

    def collect(self) -> Iterator[Metric]:
        return add_carried(super().collect(), self.carried)

    def carry(self, values: Mapping[str, Any]) -> None:
        """Take the values another process sent (counter_values, through JSON). Its last values,
        sent once it has drained, may lack what its stopped services no longer expose: a value
        already carried is kept unless the new one is larger."""
        for k, (name, labels, value) in values.items():
            was = self.carried.get(str(k))
            if was is None or float(value) > was[2]:
                self.carried[str(k)] = (str(name), {str(a): str(b) for a, b in labels.items()}, float(value))
