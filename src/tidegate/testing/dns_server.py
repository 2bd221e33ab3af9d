"""A tidegate DNS service on real sockets, run in its own thread and event loop, for blocking
clients (dnspython's dns.query, `dig`, a resolver) in the caller's thread: tests and benches that
need to change pools while the server runs (`server.call(lambda: pool.set_state(...))` runs the
change on the service's loop, as the admin API and health checks would)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tidegate.balancing.pool import Pool
from tidegate.config.load import parse_config
from tidegate.control.runtime.pools import build_pools
from tidegate.dns.service import DnsService
from tidegate.service import StandaloneHost


class DnsServer:
    def __init__(self, config_text: str) -> None:
        self.config = parse_config(config_text)
        assert self.config.dns is not None
        self.runtime = StandaloneHost(self.config, build_pools(self.config))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = DnsService(self.config.dns, self.runtime)
        self.printed = self._capture_start()
        m = re.search(r"tidegate: dns listening on (\S+):(\d+)", self.printed)
        assert m, self.printed
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))

    def _capture_start(self) -> str:
        """The service's own log lines while it starts (its address is in one: "listening on")."""
        buf = io.StringIO()
        handler = logging.StreamHandler(buf)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        announce = logging.getLogger("tidegate")
        level = announce.level
        announce.addHandler(handler)
        announce.setLevel(logging.INFO)
        try:
            self.call(self.service.start)
        finally:
            announce.removeHandler(handler)
            announce.setLevel(level)
        return buf.getvalue()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn (a function or coroutine function) on the service's loop and return its value."""
        fut: Future[Any] = Future()

        async def run() -> None:
            try:
                out = fn()
                if asyncio.iscoroutine(out):
                    out = await out
                fut.set_result(out)
            except BaseException as exc:
                fut.set_exception(exc)

        asyncio.run_coroutine_threadsafe(run(), self.loop)
        return fut.result(timeout=30)

    def pool(self, name: str = "web") -> Pool:
        return self.runtime.pools[name]

    def close(self) -> None:
        self.call(lambda: self.service.stop(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
