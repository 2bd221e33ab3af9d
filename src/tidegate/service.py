"""What every long-running part of a tidegate process is to the runtime that owns it.

The runtime (`control/runtime/process.py`) starts each service the config names, hands it the new config
and pools on SIGHUP, and stops it gracefully on SIGTERM. Stopping follows uvicorn's order: close
listeners, close idle keep-alive connections, let in-flight work finish up to `grace` seconds,
then cut what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tidegate.balancing.pool import Pool
    from tidegate.config.model import Config

C = TypeVar("C", bound=Collector)


class SectionError(Exception):
    """A section that cannot run as configured here (its message says why and what to do).

    Kinds with something that can fail beyond the config's own validation (an interface that is
    not there, a log file that cannot be opened) offer `check_section(new_cfg, running_cfg)`
    beside `make_service` (running_cfg is None for a section a reload adds): it raises this, and
    the runtime calls it for every section of a reloaded config before it changes anything, so a
    reload either applies whole or is refused whole."""


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None: ...

    async def stop(self, grace: float) -> None: ...


# Optional, for services that have per-pool facts to show in GET /api/pools (the admin API merges
# the dict under the service's name, e.g. "dns": {"max_ttl": 30, ...}):
#     def describe_pool(self, pool: str) -> dict[str, object] | None
#
# Sections added or removed by a reload (control/runtime/sections.py): the runtime starts a new service
# for an added one; for a removed one it awaits `stop_listening()` if the service has it (close
# the listeners now, so the address refuses once the reload is over), then stop(grace) runs in
# the background. Kinds that listen
# also offer `bind_sockets(section_cfg) -> list[socket]` beside `make_service`, which then takes
# them as `sockets=`: a reload binds every new listener before it changes anything, and refuses
# the whole reload if one cannot bind. Services of repeatable sections ([[http]], [[tcp]]) have
# `index`, the position of their section in the runtime's config, which the runtime keeps current.


class Host(Protocol):
    """What a service may use of the process that runs it: the one contract between the services
    (a lower layer) and the runtime (control/runtime/process.py), so nothing reaches across it
    through a string-keyed bag."""

    @property
    def config(self) -> Config: ...

    @property
    def pools(self) -> dict[str, Pool]: ...

    def listener_name(self, kind: str) -> tuple[str, int]:
        """The next name of a listener of this kind (`tcp`, `tcp.1`, … in the order they are made,
        never reused within a process, so a section added by a reload gets a new one) and its
        ordinal."""
        ...

    def figures(self, kind: str, make: Callable[[], C]) -> C:
        """The process's one Prometheus collector of this kind, made and registered on first use.

        Every service feeds its figures to /metrics this way: it attaches itself to its kind's
        collector at start and detaches at stop. One collector per kind because a registry
        refuses two with the same metric names (two [[tcp]] sections, a [dns] moved by reload)."""
        ...


class Names:
    """Listener names per kind, as Host.listener_name hands them out."""

    def __init__(self, made: Mapping[str, int] | None = None) -> None:
        self._made: dict[str, int] = dict(made or {})

    def next(self, kind: str) -> tuple[str, int]:
        made = self._made.get(kind, 0)
        self._made[kind] = made + 1
        return (kind if made == 0 else f"{kind}.{made}"), made


class Figures:
    """One collector per kind, registered in `metrics` on first use (Host.figures)."""

    def __init__(self, metrics: CollectorRegistry) -> None:
        self.metrics = metrics
        self._by_kind: dict[str, Collector] = {}

    def get(self, kind: str, make: Callable[[], C]) -> C:
        collector = self._by_kind.get(kind)
        if collector is None:
            collector = self._by_kind[kind] = make()
            self.metrics.register(collector)
        return collector  # type: ignore[return-value]  # made by `make` for this kind


class StandaloneHost:
    """A Host for services run outside the runtime: a worker process's gateway, tests."""

    def __init__(
        self, config: Config, pools: dict[str, Pool], names: Mapping[str, int] | None = None
    ) -> None:
        self.config = config
        self.pools = pools
        self.metrics = CollectorRegistry(auto_describe=True)
        # A worker's service takes its main process's listener's name: names={"http": 1} → http.1.
        self._names = Names(names)
        self._figures = Figures(self.metrics)

    def listener_name(self, kind: str) -> tuple[str, int]:
        return self._names.next(kind)

    def figures(self, kind: str, make: Callable[[], C]) -> C:
        return self._figures.get(kind, make)
