"""N instance processes of one ASGI app: started, watched, restarted when they crash or when asked.

The decisions are the table in child_state.py; this module only spawns processes, relays their
output (each line prefixed with the instance's address) and feeds events into the table. Each
process is `python -m tidegate.instance MODULE:APP --port P …`, a fresh interpreter, so a restart
runs the code now on disk. With `--port 0` an instance gets an ephemeral port the first time and
keeps it for every restart (its address is what the gateway knows it by).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tidegate.instance.child_state import (
    STABLE_AFTER,
    Action,
    ChildEvent,
    ChildState,
    crash_delay,
    transition,
)

_LISTENING = re.compile(r"tidegate: instance listening on (\S+):(\d+)(?: pid=(\d+))?(?: version=(\S+))?")


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StartError(RuntimeError):
    """An instance exited before it ever listened (the app does not import, the port is taken …)."""


@dataclass
class Child:
    index: int
    host: str
    port: int  # 0 until the first process has bound an ephemeral port
    state: ChildState = ChildState.STOPPED
    generation: int = 0  # bumped at each spawn: a restart is complete when it grew and is running
    pid: int | None = None
    version: str | None = None
    crashes_in_a_row: int = 0
    crashes: int = 0
    restarts: int = 0  # restarts asked through the control endpoint
    last_exit: int | None = None
    listened_once: bool = False
    started_at: float = 0.0
    proc: asyncio.subprocess.Process | None = None
    tail: list[str] = field(default_factory=list)  # the last lines of output, for error messages
    advertise: str | None = None  # the host a gateway or director reaches it by, if not `host`

    @property
    def address(self) -> str:
        """Where it listens."""
        return _join(self.host, self.port)

    @property
    def public(self) -> str:
        """Where a gateway or director reaches it (registered there, and what a rollout asks for)."""
        return _join(self.advertise, self.port) if self.advertise else self.address

    def view(self) -> dict[str, object]:
        return {
            "address": self.public,
            "state": self.state.value,
            "generation": self.generation,
            "pid": self.pid,
            "version": self.version,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_exit": self.last_exit,
            "uptime": round(time.monotonic() - self.started_at, 3)
            if self.state is ChildState.RUNNING
            else None,
        }


class Supervisor:
    def __init__(
        self,
        app_ref: str,
        host: str,
        ports: Sequence[int],
        instance_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        on_change: Callable[[Child], None] | None = None,
        advertise: str | None = None,
    ) -> None:
        self.app_ref = app_ref
        self.instance_args = list(instance_args)
        self.env = env
        self.children = [Child(i, host, port, advertise=advertise) for i, port in enumerate(ports)]
        self.on_change = on_change
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[int, asyncio.TimerHandle] = {}

    # --- what the control endpoint and the serve command call -------------------------------------
    async def start(self, timeout: float = 30.0) -> None:
        """Start every instance; return once all listen. StartError if one exits before listening."""
        for child in self.children:
            child.state = ChildState.STARTING
            self._spawn(child)
        deadline = time.monotonic() + timeout
        while True:
            failed = [c for c in self.children if c.crashes and not c.listened_once]
            if failed:
                c = failed[0]
                tail = "\n".join(c.tail[-15:])
                raise StartError(
                    f"instance {c.index} ({c.address}) exited with code {c.last_exit} before listening:\n{tail}"
                )
            if all(c.state is ChildState.RUNNING for c in self.children):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartError(f"instances not listening after {timeout:g} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def find(self, address: str) -> Child | None:
        for child in self.children:
            if address in (child.address, child.public, str(child.port)):
                return child
        return None

    def restart(self, child: Child) -> int:
        """Ask the instance to drain and exit; it is started again with the code now on disk.

        Returns the generation the new process will have."""
        expected = child.generation + 1
        child.restarts += 1
        self._dispatch(child, ChildEvent.RESTART)
        return expected

    async def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM every instance (they drain) and wait for them to exit; kill after `timeout`."""
        for child in self.children:
            self._dispatch(child, ChildEvent.STOP)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def view(self) -> list[dict[str, object]]:
        return [c.view() for c in self.children]

    # --- the table's actions -----------------------------------------------------------------------
    def _dispatch(self, child: Child, event: ChildEvent) -> None:
        new, action = transition(child.state, event)
        child.state = new
        if action is Action.SPAWN:
            self._spawn(child)
        elif action is Action.TERMINATE:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        elif action is Action.WAIT_BACKOFF:
            delay = crash_delay(child.crashes_in_a_row)
            loop = asyncio.get_running_loop()
            self._timers[child.index] = loop.call_later(delay, self._dispatch, child, ChildEvent.BACKOFF_OVER)
        if event is ChildEvent.STOP and child.index in self._timers:
            self._timers.pop(child.index).cancel()
        self._changed.set()
        if self.on_change is not None:
            self.on_change(child)

    def _spawn(self, child: Child) -> None:
        child.generation += 1
        child.pid = None
        task = asyncio.ensure_future(self._run_process(child, child.generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_process(self, child: Child, generation: int) -> None:
        argv = [
            sys.executable,
            "-m",
            "tidegate.instance",
            self.app_ref,
            "--host",
            child.host,
            "--port",
            str(child.port),
        ]
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                *self.instance_args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches the supervisor, which then stops
                # the instances in order (deregister first), rather than all of them at once.
                start_new_session=True,
            )
        except OSError as exc:
            child.tail.append(f"cannot start: {exc}")
            self._exited(child, -1)
            return
        child.proc = proc
        child.pid = proc.pid
        child.started_at = time.monotonic()
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            child.tail = [*child.tail[-50:], line]
            m = _LISTENING.search(line)
            if m and child.generation == generation:
                child.port = int(m.group(2))
                child.version = m.group(4)
                child.listened_once = True
                self._dispatch(child, ChildEvent.LISTENING)
            print(f"[{child.address}] {line}", file=sys.stderr, flush=True)
        rc = await proc.wait()
        self._exited(child, rc)

    def _exited(self, child: Child, rc: int) -> None:
        child.last_exit = rc
        child.proc = None
        if child.state in (ChildState.STARTING, ChildState.RUNNING):  # nobody asked: a crash
            ran = time.monotonic() - child.started_at
            child.crashes += 1
            child.crashes_in_a_row = 1 if ran >= STABLE_AFTER else child.crashes_in_a_row + 1
            print(
                f"tidegate: instance {child.address} exited with code {rc} (crash {child.crashes_in_a_row} "
                f"in a row); starting it again in {crash_delay(child.crashes_in_a_row):g} s",
                file=sys.stderr,
                flush=True,
            )
        elif child.state is ChildState.EXITING:
            child.crashes_in_a_row = 0
        self._dispatch(child, ChildEvent.EXITED)
