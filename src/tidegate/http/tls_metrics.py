"""Prometheus exposition of the [[http]] listeners' own figures: TLS handshakes and the gateway's
own answers (one collector for every [[http]] listener of a process: Host.figures)."""

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
    answers: dict[int, int]  # status → answers the gateway gave itself (no instance's)

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
        own = CounterMetricFamily(
            "tidegate_http_gateway_responses",
            "Responses the gateway gave itself, not an instance (bad request, no route, too large, "
            "no instance answered, timeout), by status code",
            labels=["listener", "code"],
        )
        for listener in self.listeners:
            tls = listener.tls
            if tls is not None:
                done.add_metric([listener.name], tls.handshakes)
                failed.add_metric([listener.name], tls.failed)
            for code, n in sorted(listener.answers.items()):
                own.add_metric([listener.name, str(code)], n)
        yield done
        yield failed
        yield own
