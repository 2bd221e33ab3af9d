"""One worker process of `workers = N`: the section's service on its own loop, pools mirrored from
the main process (see wire.py for what flows each way).

    python -m tidegate.workers.child --kind http --listen-fds FD[,FD] --control-fd FD --name http.w0

Started by the main process only. The listening sockets are the worker's own SO_REUSEPORT ones,
created and kept by the main process (so what the kernel queued on them survives a worker's
restart); the control socket is one end of a socketpair. The worker stops gracefully on the main
process's `stop` message (after a `close`, which ends its accepting), and on SIGTERM or the end of
the control stream (the main process is gone), whichever comes first. SIGINT and SIGHUP are the
main process's to handle.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
from typing import Any

from tidegate.balancing.pool import Pool, StateChange
from tidegate.observe import process_log
from tidegate.service import StandaloneHost
from tidegate.workers import wire
from tidegate.workers.kind import WorkerKind, WorkerService, load_kind

log = logging.getLogger("tidegate.workers")


def accept_report(svc: object) -> dict[str, Any]:
    gate = getattr(svc, "gate", None)
    return {} if gate is None else {gate.name: gate.figures.report()}


class Worker:
    def __init__(
        self, kind: WorkerKind, name: str, listen: list[socket.socket], control: socket.socket
    ) -> None:
        self.kind = kind
        self.name = name
        self.listen = listen
        self.control = control
        self.pools: dict[str, Pool] = {}
        self.passive = wire.PassiveResults()
        self.svc: WorkerService | None = None
        self.section: Any = None
        self.writer: asyncio.StreamWriter | None = None
        self.syncing = False
        self.done = asyncio.Event()

    def send(self, msg: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(wire.frame(msg))

    def _mirror(self, snap: dict[str, Any]) -> bool:
        """Mirror the main process's pools; whether a pool was added, replaced or removed."""
        self.syncing = True
        try:
            old = self.pools
            new = wire.apply_snapshot(old, snap)
        finally:
            self.syncing = False
        replaced = new.keys() != old.keys()
        for name, pool in new.items():
            if old.get(name) is not pool:
                replaced = True
                pool.subscribe(self._on_change)
                pool.on_result = self.passive.hook(name)
        if replaced:
            self.pools = new
        return replaced

    def _on_change(self, change: StateChange) -> None:
        # A change made here (a drain signal), not one mirrored from the main process: tell it.
        if not self.syncing:
            self.send(
                {
                    "type": "state",
                    "pool": change.pool,
                    "address": change.address,
                    "state": change.new.value,
                    "cause": change.cause,
                }
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader, self.writer = await asyncio.open_connection(sock=self.control)
        first = await wire.read_message(reader)
        if first is None or first.get("type") != "start":
            return
        self._mirror(first["pools"])
        cfg = self.section = self.kind.section(first["section"])
        runtime = StandaloneHost(self.kind.config_of(cfg), self.pools, names={self.kind.name: first["index"]})
        svc = self.svc = self.kind.make(cfg, runtime, self.listen)
        svc.name = self.name
        self._apply_shared(first)
        await svc.start()
        loop.add_signal_handler(signal.SIGTERM, lambda: self.done.set())
        reopen = getattr(svc, "reopen_logs", None)
        if reopen is not None:
            loop.add_signal_handler(signal.SIGUSR1, reopen)
        gc.freeze()  # as the main process: start-up's objects live as long as the worker
        self.send({"type": "ready"})
        self.send({"type": "synced", "seq": first["seq"]})
        reporter = loop.create_task(self._report())
        control = loop.create_task(self._control(reader))
        await self.done.wait()
        reporter.cancel()
        control.cancel()
        self._send_figures()
        if self.writer is not None:
            self.writer.close()

    async def _control(self, reader: asyncio.StreamReader) -> None:
        svc = self.svc
        assert svc is not None
        while True:
            msg = await wire.read_message(reader)
            if msg is None:
                log.warning("%s worker: the main process is gone; stopping", self.name)
                await svc.stop(30.0)
                self.done.set()
                return
            kind = msg.get("type")
            if kind == "pools":
                if self._mirror(msg["pools"]):
                    await svc.reload(self.kind.config_of(self.section), self.pools)
                self._apply_shared(msg)
                self.send({"type": "synced", "seq": msg["seq"]})
            elif kind == "reload":
                self._mirror(msg["pools"])
                self.section = self.kind.section(msg["section"])
                await svc.reload(self.kind.config_of(self.section), self.pools)
                self._apply_shared(msg)
                self.send({"type": "synced", "seq": msg["seq"]})
            elif kind == "close":
                # Stop accepting now; the main process then closes its copy of the socket, and the
                # address refuses while what is in flight here finishes (the `stop` that follows).
                await svc.stop_listening()
                self.send({"type": "closed"})
            elif kind == "stop":
                await svc.stop(float(msg["grace"]))
                self._send_figures()
                self.done.set()
                return

    def _apply_shared(self, msg: dict[str, Any]) -> None:
        """The main process's word on what every worker agrees on (parent.py `_shared`), to a
        service that takes it (an `apply_shared` method: the DNS serial)."""
        apply = getattr(self.svc, "apply_shared", None)
        if apply is not None and msg.get("shared"):
            apply(msg["shared"])

    def _send_figures(self) -> None:
        svc = self.svc
        self.send(
            {
                "type": "figures",
                "counters": wire.figures_of(self.pools),
                "passive": self.passive.take(),
                "own": self.kind.report(svc) if svc is not None else {},
                # Every kind's listener has a gate (accepting.py); summed by the main process.
                "accept": accept_report(svc),
            }
        )

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(wire.REPORT_INTERVAL)
            self._send_figures()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.workers.child")
    ap.add_argument("--kind", required=True)
    ap.add_argument("--listen-fds", required=True)
    ap.add_argument("--control-fd", type=int, required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Reloads reach a worker from the main process (a `reload` message). A SIGHUP sent to every
    # tidegate process (`pkill -HUP`, a terminal's hangup) must not kill it by the default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # SIGUSR1 reopens log files (the main process passes it on); never the default action (exit).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    process_log.configure()  # as `tidegate --log-level --log-format` chose (the environment)
    # The main process logs every pool change once; its mirrors here would repeat each N times.
    logging.getLogger("tidegate.balancing").setLevel(logging.WARNING)
    listen = [socket.socket(fileno=int(fd)) for fd in args.listen_fds.split(",")]
    control = socket.socket(fileno=args.control_fd)
    import uvloop

    uvloop.run(Worker(load_kind(args.kind), args.name, listen, control).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
