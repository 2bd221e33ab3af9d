"""What every long-running part of a tidegate process is to the runtime that owns it.

The runtime (`control/runtime/process.py`) starts each service the config names, hands it the new config
and pools on SIGHUP, and stops it gracefully on SIGTERM. Stopping follows uvicorn's order: close
listeners, close idle keep-alive connections, let in-flight work finish up to `grace` seconds,
then cut what is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tidegate.balancing.pool import Pool
    from tidegate.config.model import Config


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
