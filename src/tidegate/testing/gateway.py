"""A gateway in a thread of the test process, on its own uvloop: quick to start, real sockets.

`GatewayThread(config_dict)` runs the real `HttpService` for the config's first [[http]] section;
tests talk to it with blocking clients, reload it, and reach its pools. Features that are about
the process (signals, memory) are tested through `tidegate run` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from tidegate.config.model import Config
from tidegate.control.runtime.pools import build_pools, reload_pools
from tidegate.http.service import HttpService, make_service
from tidegate.service import StandaloneHost


class GatewayThread:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = Config.model_validate(config)
        self.runtime = StandaloneHost(self.config, build_pools(self.config))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.service: HttpService | None = None
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.result(10)
        assert self.service is not None
        host, _, port = self.service.address.rpartition(":")
        self.host, self.port = host, int(port)

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        import uvloop

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.service = make_service(self.config.http[0], self.runtime)
                await self.service.start()
            except BaseException as exc:
                started.set_exception(exc)
                raise
            started.set_result(None)
            await self._stop.wait()

        uvloop.run(main())

    @property
    def pools(self) -> dict[str, Any]:
        return self.runtime.pools

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn(*args) (a coroutine function or a plain one) on the gateway's loop."""
        assert self.loop is not None

        async def run() -> Any:
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
            return out

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def counters(self, pool: str = "web") -> dict[str, Any]:
        """A copy of each instance's figures, read on the gateway's loop (after its pending work)."""

        def snapshot() -> dict[str, Any]:
            return {i.address: dataclasses.replace(i.counters) for i in self.runtime.pools[pool]}

        got: dict[str, Any] = self.call(snapshot)
        return got

    def reload(self, config: Mapping[str, Any]) -> None:
        new = Config.model_validate(config)

        async def apply() -> None:
            assert self.service is not None
            self.runtime.pools = reload_pools(self.runtime.pools, new)
            await self.service.reload(new, self.runtime.pools)

        self.call(apply)
        self.config = new

    def stop(self, grace: float = 5.0) -> None:
        if self.loop is None or not self._thread.is_alive():
            return

        async def stop() -> None:
            assert self.service is not None and self._stop is not None
            await self.service.stop(grace)
            self._stop.set()

        self.call(stop)
        self._thread.join(10)


def gateway_config(
    addresses: list[str] | list[dict[str, Any]],
    *,
    scheduler: str = "round-robin",
    hash_key: str = "source-ip",
    limits: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    http: dict[str, Any] | None = None,
    pools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A config dict with one pool "web" over `addresses` and one [[http]] section on port 0."""
    instances = [a if isinstance(a, dict) else {"address": a} for a in addresses]
    section: dict[str, Any] = {"listen": "127.0.0.1:0", "pool": "web"}
    if limits:
        section["limits"] = limits
    if retry:
        section["retry"] = retry
    section.update(http or {})
    return {
        "pools": [{"name": "web", "scheduler": scheduler, "hash_key": hash_key, "instances": instances}]
        + (pools or []),
        "http": [section],
    }
