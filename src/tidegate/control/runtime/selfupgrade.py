"""Self-upgrade (SIGUSR2): a new tidegate process from the code installed now takes over the
listening sockets and the operator state of this one, and this one leaves once it is ready.

Theory of operation. The old process starts `python -m tidegate run ...` again (the same
interpreter path, config file and arguments) with one end of a Unix socketpair. The new process
reads its config (one that does not load fails the upgrade here) and says `hello`; the old one
sends every listening socket it holds — one message, the descriptors as SCM_RIGHTS — and the
state snapshot (handover_state.py). The new process serves the same sockets (nothing is closed
or bound again, so no connection attempt is refused: both processes accept from the same kernel
queues for a moment) and says `ready`. The old process then makes it current (pid file, systemd
MAINPID), stops accepting, finishes what it has in flight (idle keep-alive connections are told
`Connection: close` on their next answer), hands the counters' last increase over and exits.
Whatever goes wrong before `ready` (the process exits, sends something else, or is not ready
within READY_TIMEOUT) stops the new process and leaves the old one serving, with the reason
logged. The sequence is upgrade_machine.py's; this module only moves bytes and descriptors.

systemd (packaging/tidegate.service, Type=notify, NotifyAccess=all): READY=1 once serving,
RELOADING=1 while a reload or an upgrade runs, MAINPID= of the new process at the switch,
STOPPING=1 on a stop. One datagram to $NOTIFY_SOCKET each; nothing is sent without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tidegate.control.runtime.carried import counter_values
from tidegate.control.runtime.handover_state import Snapshot, SnapshotError, Verdict, add_counters, capture
from tidegate.control.runtime.sections import Key
from tidegate.control.runtime.upgrade_machine import Action, Event, Phase, step

if TYPE_CHECKING:
    from tidegate.control.runtime.process import Runtime

log = logging.getLogger("tidegate")

READY_TIMEOUT = float(os.environ.get("TIDEGATE_UPGRADE_TIMEOUT", "60"))
_LEN = struct.Struct(">I")
_MAX_FDS = 1024
_MAX_MESSAGE = 256 << 20


# --- systemd and the pid file -------------------------------------------------------------------
def notify(*fields: str) -> None:
    """sd_notify(3) without the library: one datagram of NAME=value lines to $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode(), path)
    except OSError as exc:
        log.warning("systemd notify (%s): %s", ", ".join(fields), exc)


def reloading() -> None:
    notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def write_pid_file(path: str, pid: int) -> None:
    """Replace the file whole (a reader never sees it empty or half written)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, path)


def remove_pid_file(path: str, pid: int) -> None:
    """Remove the pid file if it still names `pid` (after an upgrade it names the new process)."""
    with contextlib.suppress(OSError, ValueError):
        with open(path) as f:
            if int(f.read().strip()) != pid:
                return
        os.unlink(path)


# --- the channel between the two processes --------------------------------------------------------
class Channel:
    """Length-framed JSON messages over a Unix stream socket; the first may carry descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.fds: list[int] = []
        self.closed = False

    @staticmethod
    def frame(msg: Mapping[str, Any]) -> bytes:
        body = json.dumps(msg, separators=(",", ":")).encode()
        return _LEN.pack(len(body)) + body

    def _take(self) -> dict[str, Any] | None:
        if len(self.buf) < _LEN.size:
            return None
        (n,) = _LEN.unpack_from(self.buf)
        if n > _MAX_MESSAGE:
            raise ValueError(f"a message of {n} bytes from the other process")
        if len(self.buf) < _LEN.size + n:
            return None
        msg: dict[str, Any] = json.loads(bytes(self.buf[_LEN.size : _LEN.size + n]))
        del self.buf[: _LEN.size + n]
        return msg

    # Before the event loop runs (the new process, taking the sockets over).
    def send_now(self, msg: Mapping[str, Any]) -> None:
        self.sock.sendall(self.frame(msg))

    def recv_now(self) -> dict[str, Any] | None:
        while (msg := self._take()) is None:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, _MAX_FDS)
            self.fds.extend(fds)
            if not data:
                return None
            self.buf += data
        return msg

    # On the event loop (the socket is non-blocking by then).
    async def send(self, msg: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
        data = self.frame(msg)
        if fds:
            # A small first message into an empty socket buffer: sent whole, descriptors and all.
            sent = socket.send_fds(self.sock, [data], list(fds))
            data = data[sent:]
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def recv(self) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        while (msg := self._take()) is None:
            data = await loop.sock_recv(self.sock, 1 << 16)
            if not data:
                return None
            self.buf += data
        return msg

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


# --- the new process's side -------------------------------------------------------------------------
@dataclass
class Inherited:
    """What the new process received: listening sockets by section key, in the old one's order,
    and the operator state."""

    channel: Channel
    parent: int
    sockets: dict[Key, list[list[socket.socket]]] = field(default_factory=dict)
    snapshot: Snapshot = field(default_factory=Snapshot)
    counters: dict[str, Any] = field(default_factory=dict)  # carried.py

    def verdicts(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {name: {a: vars(v) for a, v in by.items()} for name, by in self.snapshot.health.items()}


def take_over(fd: int) -> Inherited:
    """Say hello to the old process and receive its sockets and state (blocking, bounded).
    Raises RuntimeError when the old process sends nothing usable."""
    sock = socket.socket(fileno=fd)
    sock.settimeout(READY_TIMEOUT)
    ch = Channel(sock)
    ch.send_now({"type": "hello", "pid": os.getpid()})
    head = ch.recv_now()
    if head is None or head.get("type") != "listeners":
        raise RuntimeError(f"self-upgrade: the old process sent {head!r}, not its listeners")
    got = Inherited(ch, int(head["pid"]))
    fds = iter(ch.fds)
    for kind, key, count in head["sections"]:
        socks = [socket.socket(fileno=next(fds)) for _ in range(count)]
        for s in socks:
            s.setblocking(False)
        got.sockets.setdefault((kind, key), []).append(socks)
    state = ch.recv_now()
    if state is None or state.get("type") != "state":
        raise RuntimeError("self-upgrade: the old process did not send its state")
    try:
        got.snapshot = Snapshot.from_json(state["snapshot"])
        got.counters = dict(state.get("counters", {}))
    except SnapshotError as exc:
        raise RuntimeError(f"self-upgrade: {exc}") from None
    sock.setblocking(False)
    return got


async def follow_old(rt: Runtime, inh: Inherited) -> None:
    """Tell the old process this one is ready; take its `commit`, then its counters (once it has
    stopped accepting, and once it has drained). The admin API starts here after the first of
    those (or when the old process is gone)."""
    ch = inh.channel
    base = {f"{n} {a}": s.counters for n, insts in inh.snapshot.pools.items() for a, s in insts.items()}
    try:
        await ch.send({"type": "ready", "pid": os.getpid()})
        while (msg := await ch.recv()) is not None:
            if msg.get("type") == "commit":
                log.info(
                    "self-upgrade: this process (pid %d) is current; pid %d drains", os.getpid(), inh.parent
                )
            elif msg.get("type") == "figures":
                _add_growth(rt, base, msg["pools"])
                rt.metrics.carry(msg.get("counters", {}))
                await rt.start_deferred()
    except (OSError, ValueError) as exc:
        log.warning("self-upgrade: the channel to the old process: %s", exc)
    finally:
        ch.close()
        await rt.start_deferred()


def _add_growth(rt: Runtime, base: dict[str, dict[str, Any]], grown: Mapping[str, Mapping[str, Any]]) -> None:
    """The old process's instance counters grew since it last said (`base`: the snapshot's, then
    each report's): add that growth here."""
    for name, by_address in grown.items():
        pool = rt.pools.get(name)
        if pool is None:
            continue
        for address, after in by_address.items():
            inst = pool.get(address)
            if inst is not None:
                add_counters(inst.counters, after, base.get(f"{name} {address}"))
                base[f"{name} {address}"] = after


# --- the old process's side -------------------------------------------------------------------------
class _Failed(Exception):
    pass


class Upgrader:
    """Runs upgrade_machine's sequence for one runtime; `request()` is SIGUSR2 and the API."""

    def __init__(self, rt: Runtime, argv: Sequence[str]) -> None:
        self.rt = rt
        self.argv = list(argv)
        self.phase = Phase.IDLE
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.successor: int | None = None

    def _advance(self, event: Event) -> tuple[Action, ...]:
        self.phase, actions = step(self.phase, event)
        return actions

    async def request(self) -> tuple[bool, str]:
        """Upgrade now; (True, "pid N") once the new process is current, else (False, why)."""
        if Action.REFUSE in self._advance(Event.REQUESTED):
            why = "a self-upgrade is under way already" if self.phase is not Phase.IDLE else "stopping"
            log.warning("self-upgrade refused: %s", why)
            return False, why
        log.info("self-upgrade: starting a new process (%s)", " ".join(self._command()))
        reloading()
        try:
            async with self.rt.reload_lock:  # no reload while the state is handed over
                async with asyncio.timeout(READY_TIMEOUT):
                    await self._run()
        except TimeoutError:
            return await self._abandon(f"the new process was not ready within {READY_TIMEOUT:g}s")
        except (_Failed, OSError, ValueError) as exc:
            return await self._abandon(str(exc))
        pid = self.successor
        assert pid is not None
        self._advance(Event.READY)
        if self.rt.pid_file:
            write_pid_file(self.rt.pid_file, pid)
        notify(f"MAINPID={pid}", "READY=1")
        log.info("self-upgrade: pid %d is ready and current; this process stops accepting and drains", pid)
        log.info(f"upgraded to pid {pid}")
        ch = self.channel
        assert ch is not None
        with contextlib.suppress(OSError):
            await ch.send({"type": "commit"})
        self.rt.leave()
        return True, f"pid {pid}"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "tidegate", *self.argv]

    async def _run(self) -> None:
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [*self._command(), "--handover-fd", str(there.fileno())],
                pass_fds=(there.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            here.close()
            raise _Failed(f"the new process could not be started: {exc}") from None
        finally:
            there.close()
        here.setblocking(False)
        ch = self.channel = Channel(here)
        hello = await ch.recv()
        if hello is None or hello.get("type") != "hello":
            raise _Failed(await self._gone("before it asked for the sockets"))
        self.successor = self.proc.pid
        self._advance(Event.HELLO)
        listening = self.rt.listening()
        head = {
            "type": "listeners",
            "pid": os.getpid(),
            "sections": [[key[0], key[1], len(socks)] for key, socks in listening],
        }
        await ch.send(head, [s.fileno() for _, socks in listening for s in socks])
        await ch.send({"type": "state", "snapshot": self.snapshot().to_json(), "counters": self._counters()})
        ready = await ch.recv()
        if ready is None or ready.get("type") != "ready":
            raise _Failed(await self._gone("before it was ready"))

    def snapshot(self) -> Snapshot:
        health = self.rt.health_verdicts()
        return capture(
            self.rt.pools,
            self.rt.registered,
            {name: {a: Verdict(**v) for a, v in by.items()} for name, by in health.items()},
        )

    def _counters(self) -> dict[str, Any]:
        return dict(counter_values(self.rt.metrics.collect()))

    async def _gone(self, when: str) -> str:
        proc = self.proc
        assert proc is not None
        try:
            code = await asyncio.to_thread(proc.wait, 5.0)
        except subprocess.TimeoutExpired:
            return f"the new process (pid {proc.pid}) stopped talking {when}"
        return f"the new process (pid {proc.pid}) exited with status {code} {when}"

    async def _abandon(self, why: str) -> tuple[bool, str]:
        self._advance(Event.FAILED)
        proc, self.proc = self.proc, None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self.successor = None
        log.error("self-upgrade failed: %s; this process (pid %d) keeps serving", why, os.getpid())
        log.error(f"self-upgrade failed: {why}")
        notify("READY=1")
        return False, why

    async def report(self) -> None:
        """The counters as they are now, for the new process to carry on from (sent once this
        process stopped accepting, and once it has drained)."""
        if self.channel is None:
            return
        grown = {
            name: {a: s.counters for a, s in insts.items()} for name, insts in self.snapshot().pools.items()
        }
        with contextlib.suppress(OSError):
            await self.channel.send({"type": "figures", "pools": grown, "counters": self._counters()})

    async def drained(self) -> None:
        """The runtime stopped its services: hand the counters' last increase over."""
        if self._advance(Event.DRAINED) and self.channel is not None:
            await self.report()
            ch, self.channel = self.channel, None
            ch.close()

    @property
    def committed(self) -> bool:
        return self.phase in (Phase.DRAINING, Phase.EXITED)

    def cancel(self) -> None:
        """A stop while an upgrade is under way: the new process goes (the upgrade then fails the
        usual way), and this one stops as asked."""
        if self.phase in (Phase.SPAWNING, Phase.WAITING_READY) and self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.terminate()
