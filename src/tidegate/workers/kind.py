"""What a kind of listening section supplies to run with `workers = N` (one object per kind).

The generic machinery (parent.py, child.py, wire.py) knows pools, instance counters and
processes; a kind knows its section model, its sockets and its own figures. Kinds are found by
name through KINDS ("module:attribute", imported when used), so this package imports no data plane.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tidegate.config.model import Config
    from tidegate.service import Host, Service

KINDS: dict[str, str] = {
    "http": "tidegate.http.worker_kind:KIND",
    "tcp": "tidegate.tcp.worker_kind:KIND",
    "dns": "tidegate.dns.worker_kind:KIND",
}


class WorkerService(Protocol):
    """A section's service as it runs inside a worker process."""

    name: str

    async def start(self) -> None: ...

    async def reload(self, config: Config, pools: Mapping[str, Any]) -> None: ...

    async def stop_listening(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class Totals(Protocol):
    """The main process's side of a kind's own figures: the workers' reports added up, shown in
    GET /api/pools and /metrics as one listener's."""

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        """A worker's cumulative figures (what `WorkerKind.report` made there)."""
        ...

    def forget(self, worker: int) -> None:
        """The worker is gone: its gauges leave the sums; its counts stay counted."""
        ...

    def reload(self, config: Config, pools: Mapping[str, Any]) -> None:
        """The section's service was reloaded (its cfg is the new one)."""
        ...

    def describe_pool(self, pool: str) -> dict[str, object] | None: ...

    def close(self) -> None:
        """The section's service stops: leave /metrics."""
        ...


class WorkerKind(Protocol):
    name: str  # the section kind: http, tcp, dns

    def section(self, doc: Mapping[str, Any]) -> Any:
        """The section's model from its JSON form (how the main process sends it)."""
        ...

    def config_of(self, section: Any) -> Config:
        """A config holding only this section, for Service.reload in a worker."""
        ...

    def workers(self, section: Any) -> int: ...

    def bind(self, section: Any, n: int) -> list[list[socket.socket]]:
        """The listening sockets of n workers on the section's address (SO_REUSEPORT)."""
        ...

    def after_reload(self, config: Config, current: Any, index: int, name: str) -> Any:
        """The section the running listener follows after a reload (its address kept)."""
        ...

    def make(self, section: Any, host: Host, sockets: list[socket.socket]) -> WorkerService:
        """The section's service in a worker, on the worker's sockets."""
        ...

    def report(self, service: WorkerService) -> dict[str, Any]:
        """The service's own cumulative figures, sent to the main process a few times a second."""
        ...

    def totals(self, host: Host, name: str, service: Service) -> Totals:
        """The main process's aggregate of those figures for the section's service."""
        ...


def load_kind(name: str) -> WorkerKind:
    module, _, attr = KINDS[name].partition(":")
    kind: WorkerKind = getattr(importlib.import_module(module), attr)
    return kind
