"""Run one ASGI app as a drain-aware instance on uvicorn (`python -m tidegate.instance`).

The shutdown order, and why it differs from uvicorn's own: uvicorn closes its listener the moment
SIGTERM arrives. A gateway that has not yet heard of the drain (a request already on its way, a
keep-alive connection taken from its pool) would then meet a refused or reset connection. So on
SIGTERM we only enter the exiting state and keep listening for `drain_window` seconds, answering
every new request with the drain signal — the gateway retries those elsewhere and marks this
instance draining. Then uvicorn's shutdown runs as usual: close the listener, close idle
keep-alive connections, wait for in-flight requests until the grace period (counted from SIGTERM)
runs out, cancel what is left (counted), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import time

import uvicorn
from uvicorn.importer import ImportFromStringError, import_from_string

from tidegate.instance.announcing_server import AnnouncingServer
from tidegate.instance.asgi import ASGIApp
from tidegate.instance.drain_state import DrainState
from tidegate.instance.lifeline import exit_after, orphaned, say, silence_output
from tidegate.instance.middleware import DrainMiddleware

# How long after its grace an instance whose orderly shutdown is stuck is made to exit.
DEADLINE_MARGIN = 1.0


def app_version(app_ref: str) -> str | None:
    """The version an app declares: `VERSION` or `__version__` in the module that holds it."""
    module = importlib.import_module(app_ref.partition(":")[0])
    for name in ("VERSION", "__version__"):
        value = getattr(module, name, None)
        if value is not None:
            return str(value)
    return None


class DrainingServer(AnnouncingServer):
    """A uvicorn server whose SIGTERM starts a drain instead of closing the listener."""

    def __init__(self, config: uvicorn.Config, state: DrainState, drain_window: float, grace: float):
        super().__init__(config, "instance")
        self.state = state
        self.drain_window = drain_window
        self.grace = grace

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.begin_drain, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.begin_drain, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.parent_gone)  # lifeline.py: the supervisor died
        try:
            await super().serve(sockets)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGHUP)

    def parent_gone(self) -> None:
        """The supervisor died: drain as on SIGTERM, but never cut a drain already under way."""
        if orphaned():
            silence_output()  # nobody reads our pipe any more: writes would fail
        if not self.state.exiting:
            self.begin_drain("SIGHUP: supervisor gone")

    def begin_drain(self, reason: str) -> None:
        if not self.state.begin(reason):
            self.force_exit = True  # a second signal: stop waiting for in-flight work
            self.should_exit = True
            return
        # First the deadline, so nothing below (nor a stuck app) can keep the drain from ending.
        exit_after(max(self.grace, self.drain_window) + DEADLINE_MARGIN, reason)
        say(
            f"tidegate: instance exiting ({reason}): drain signal for {self.drain_window:g} s, "
            f"in-flight requests get up to {self.grace:g} s"
        )
        asyncio.get_running_loop().call_later(self.drain_window, self._end_window)

    def _end_window(self) -> None:
        since = self.state.exiting_since or time.monotonic()
        # What is left of the grace period is what uvicorn's shutdown may wait for in-flight work.
        left = max(0.1, self.grace - (time.monotonic() - since))
        self.config.timeout_graceful_shutdown = left  # type: ignore[assignment]
        self.should_exit = True


def build(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    version: str | None = None,
    grace: float = 30.0,
    drain_window: float = 1.0,
    health_path: str = "/healthz",
    app_health: bool = False,
    keep_alive: float = 75.0,
    log_level: str = "warning",
) -> DrainingServer:
    state = DrainState()
    wrapped = DrainMiddleware(app, state, version=version, health_path=health_path, app_health=app_health)
    config = uvicorn.Config(
        wrapped,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="auto",
        access_log=False,
        log_level=log_level,
        # Longer than a gateway's idle pool timeout, so the gateway closes idle connections first:
        # the other way round, it may send a request on a connection the instance is closing.
        timeout_keep_alive=int(keep_alive),
        timeout_graceful_shutdown=int(grace),
        server_header=False,
    )
    return DrainingServer(config, state, drain_window, grace)


def run(app_ref: str, host: str, port: int, **options: object) -> int:
    """Import MODULE:APP, serve it until drained; 0 after a drain, 2 if the app cannot load."""
    try:
        app = import_from_string(app_ref)
        version = app_version(app_ref)
    except ImportFromStringError as exc:
        print(f"tidegate: instance: {exc}", file=sys.stderr, flush=True)
        return 2
    server = build(app, host, port, version=version, **options)  # type: ignore[arg-type]
    # The supervisor reads the pid and version from the listening line.
    server.announce = f" pid={os.getpid()}" + (f" version={version}" if version is not None else "")
    import uvloop

    try:
        uvloop.run(server.serve())
    except SystemExit as exc:  # uvicorn exits 3 when the app's lifespan startup fails
        return int(exc.code or 0)
    state = server.state
    if state.exiting:
        say(f"tidegate: instance exited: {state.summary()}")
    return 0
