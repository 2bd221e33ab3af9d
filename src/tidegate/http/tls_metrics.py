"""Prometheus exposition of TLS listeners' handshakes (one collector for every [[http]] listener
of a process: Host.figures)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Handshakes(Protocol):
    handshakes: int
    failed: int


class TlsListener(Protocol):
    """An HttpService, or the main process's sums of its workers' (http/worker_kind.py)."""

    name: str

    @property
    def tls(self) -> Handshakes | None: ...


class TlsCollector(Collector):
    def __init__(self) -> None:
        self.listeners: list[TlsListener] = []

    def collect(self) -> Iterator[Metric]:
        done = CounterMetricFamily(
            "tidegate_http_tls_handshakes", "TLS handshakes completed", labels=["listener"]
        )
        failed = CounterMetricFamily(
            "tidegate_http_tls_handshake_failures",
            "TLS handshakes that failed (bad client hello, no shared protocol or cipher, timeout, reset)",
            labels=["listener"],
        )
        for listener in self.listeners:
            tls = listener.tls
            if tls is not None:
                done.add_metric([listener.name], tls.handshakes)
                failed.add_metric([listener.name], tls.failed)
        yield done
        yield failed
