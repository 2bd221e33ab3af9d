"""When a stream listener accepts: `max_connections`, the open-files guard and accept errors.

Every stream listener ([[http]] with or without TLS, [[tcp]], DNS-over-TCP) keeps its listening
socket open for its whole life and serves it through a loop server made on a duplicate of it.
Pausing closes that server only: the kernel's backlog then holds new clients (their SYN answered,
nothing read) until the gate serves the socket again, so a client beyond a limit waits instead of
being refused or reset.

Why the gate watches file descriptors itself. What the event loops do when accept() fails for
want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM):
- uvloop (what tidegate runs on) hands the listening socket to libuv. On EMFILE or ENFILE libuv
  closes a descriptor it keeps in reserve for this, then accepts every client waiting in the
  backlog and closes each at once, and opens its reserve again (uv__emfile_trick in libuv's
  src/unix/stream.c): the waiting clients see their connection closed unanswered, and nothing
  reaches Python, so there is nothing to count or log. Only when that reserve is missing, or for
  ENOBUFS / ENOMEM, does the listen callback get the error: uvloop then reports "Fatal error on
  server TCPServer" to the loop's exception handler and closes the server for good
  (uvloop/handles/streamserver.pyx, `__uv_streamserver_on_listen` and `_fatal_error`).
- asyncio reports "socket.accept() out of system resource" to the exception handler for each
  failure, stops reading the listening socket, and tries again one second later
  (asyncio/selector_events.py, `_accept_connection`).
Accepting in Python instead of libuv would see every error but doubles the CPU an accept costs
(about 25 against 50 µs per connection measured on this box). So the gate keeps uvloop's accept
and avoids the failure: every few connections it looks at the lowest free descriptor (what the
next accept() would get, as POSIX hands them out), and when that is within FD_HEADROOM of the
limit, all below it are taken; the gate then pauses (reason `open_files`) and serves again when one of its connections closes, or a second
later (another listener's connections may be the ones to close). What still fails reaches the
loop's exception handler, installed here: counted by errno, logged at most once a second per
listener with the number of lines left out, and a server uvloop closed is made again after a
second, as asyncio does.

libuv accepts the whole backlog in one go before any `connection_made` runs, so a listener can
pass `max_connections` (or come nearer the limit than FD_HEADROOM) by the clients that were
waiting at that moment; docs/configuration.md says so.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tidegate.fdlimit import open_files
from tidegate.workers.sums import increases

log = logging.getLogger("tidegate.accept")

RESOURCE_ERRNOS: Final = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
RETRY: Final = 1.0  # seconds before serving again after an accept error or at the open-files limit
FD_HEADROOM: Final = 64  # descriptors left for instance connections, health checks, logs, bursts
FD_CHECK_EVERY: Final = 8  # connections accepted between two looks at the free descriptors
LOG_EVERY: Final = 1.0  # at most one line a second per listener and kind of event
PAUSE_REASONS: Final = ("max_connections", "open_files")


class AcceptFigures:
    """One listener's counts: pauses by reason, accept errors by errno name."""

    __slots__ = ("errors", "pauses")

    def __init__(self) -> None:
        self.pauses: dict[str, int] = dict.fromkeys(PAUSE_REASONS, 0)
        self.errors: dict[str, int] = {}

    def report(self) -> dict[str, Any]:
        return {"pauses": dict(self.pauses), "errors": dict(self.errors)}


class RateLog:
    """A warning at most once per LOG_EVERY seconds; the next line says how many were left out."""

    __slots__ = ("last", "left_out", "now")

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.last = float("-inf")
        self.left_out = 0

    def warn(self, msg: str, *args: object) -> bool:
        t = self.now()
        if t - self.last < LOG_EVERY:
            self.left_out += 1
            return False
        if self.left_out:
            msg += " (%d more like it left out of the log)"
            args = (*args, self.left_out)
        self.last = t
        self.left_out = 0
        log.warning(msg, *args)
        return True


Serve = Callable[[socket.socket], Awaitable[asyncio.AbstractServer]]


class AcceptGate:
    """A listener's accepting, paused and resumed. The service tells it of every connection
    opened and closed; `count` says how many it holds open now."""

    def __init__(
        self,
        name: str,
        listener: socket.socket,
        serve: Serve,
        max_connections: int,
        count: Callable[[], int],
        collector: AcceptCollector | None = None,
    ) -> None:
        self.name = name
        self.listener = listener
        self.serve = serve
        self.max_connections = max_connections
        self.count = count
        self.collector = collector
        self.loop = asyncio.get_running_loop()
        self.server: asyncio.AbstractServer | None = None
        self.paused: str | None = None  # the reason, while paused
        self.resuming = False
        self.closed_for_good = False
        self.fd_ceiling = open_files() - FD_HEADROOM
        self._until_check = 1  # connections until the next look at the descriptors
        self.figures = AcceptFigures()
        self._served_fd = -1  # the duplicate the server reads: how asyncio's reports name it
        self._retry: asyncio.TimerHandle | None = None
        self._pause_log = RateLog(self.loop.time)
        self._error_log = RateLog(self.loop.time)

    async def start(self) -> None:
        _watch(self.loop).add(self)
        if self.collector is not None:
            self.collector.sources.append(self)
        self.server = await self._serve()

    async def _serve(self) -> asyncio.AbstractServer:
        sock = self.listener.dup()
        self._served_fd = sock.fileno()
        return await self.serve(sock)

    # --- connections ---------------------------------------------------------------------------
    def opened(self) -> None:
        """A connection was accepted (and is in `count` already)."""
        if self.count() >= self.max_connections:
            self.pause("max_connections")
            return
        # Every FD_CHECK_EVERY-th connection: asking uvloop for a connection's descriptor makes
        # it keep a socket object for it (72 bytes an idle connection), and the probe costs
        # four system calls; FD_HEADROOM covers the connections between two looks.
        self._until_check -= 1
        if self._until_check <= 0:
            self._until_check = FD_CHECK_EVERY
            if _next_accepted_fd() >= self.fd_ceiling:
                self.pause("open_files")

    def closed(self) -> None:
        if self.paused is not None and (self.paused != "open_files" or _next_accepted_fd() < self.fd_ceiling):
            self.resume()

    def _retry_open_files(self) -> None:
        # Another listener's connections, or instance connections, may have freed descriptors.
        self._retry = None
        if self.paused != "open_files" or self.closed_for_good:
            return
        if _next_accepted_fd() < self.fd_ceiling:
            self.resume()
        else:
            self._retry = self.loop.call_later(RETRY, self._retry_open_files)

    # --- pausing ------------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        if self.server is None or self.paused is not None:
            return
        count = self.count()
        self.paused = reason
        self.figures.pauses[reason] += 1
        self.server.close()
        self.server = None
        if reason == "open_files":
            self._retry = self.loop.call_later(RETRY, self._retry_open_files)
            self._pause_log.warn(
                "%s: %d connections open and the process near its open-files limit (%d): "
                "new clients wait in the backlog until descriptors are free",
                self.name,
                count,
                self.fd_ceiling + FD_HEADROOM,
            )
        else:
            self._pause_log.warn(
                "%s: %d connections open (max_connections): new clients wait in the backlog "
                "until one closes (%d pauses so far)",
                self.name,
                count,
                self.figures.pauses[reason],
            )

    def resume(self) -> None:
        if self.paused is None or self.resuming or self.closed_for_good:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.resuming = True  # a second close while the server starts must not start two
        self.loop.create_task(self._resume())

    async def _resume(self) -> None:
        try:
            server = await self._serve()
        except OSError as exc:  # out of descriptors for the duplicate itself: try again later
            self.resuming = False
            self._error(exc)
            if self._retry is None and not self.closed_for_good:
                self._retry = self.loop.call_later(RETRY, self.resume)
            return
        self.resuming = False
        if self.closed_for_good:
            server.close()
            return
        if self.count() >= self.max_connections:  # full again meanwhile (TLS handshakes ending)
            server.close()
            return
        self.paused = None
        self.server = server

    # --- errors the loop reports ----------------------------------------------------------------
    def _error(self, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.figures.errors[name] = self.figures.errors.get(name, 0) + 1
        self._error_log.warn("%s: accept() failed: %s; accepting again in %.0fs", self.name, name, RETRY)
        if self.paused is None and self._retry is None and not self.closed_for_good:
            self._retry = self.loop.call_later(RETRY, self._retry_after_error)

    def _retry_after_error(self) -> None:
        self._retry = None
        if self.closed_for_good or self.paused is not None or self.resuming:
            return
        if self.server is not None and _serving(self.server):
            return  # asyncio serves again by itself
        if self.server is not None:
            self.server.close()
            self.server = None
        self.paused = "error"
        self.resume()

    def owns(self, context: Mapping[str, Any]) -> bool:
        """Whether an exception-handler report is about this listener's server."""
        sock = context.get("socket")
        if sock is not None:
            try:
                return bool(sock.fileno() == self._served_fd)
            except OSError:
                return False
        return self.server is not None and not _serving(self.server)

    def close(self) -> None:
        """For good: the server and the listening socket."""
        self.closed_for_good = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.server is not None:
            self.server.close()
            self.server = None
        self.listener.close()
        watch = _WATCHES.get(self.loop)
        if watch is not None:
            watch.discard(self)
        if self.collector is not None and self in self.collector.sources:
            self.collector.sources.remove(self)


def _next_accepted_fd() -> int:
    """The descriptor accept() would get once serving again: POSIX hands out the lowest free one,
    and serving again takes one itself first (the listening socket's duplicate)."""
    taken: list[int] = []
    try:
        for _ in range(2):
            taken.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return 1 << 30  # not two free at all
    finally:
        for fd in taken:
            os.close(fd)
    return taken[1]


def _serving(server: asyncio.AbstractServer) -> bool:
    """Whether the server still has a live listening socket (uvloop closes it on a fatal error)."""
    try:
        socks = server.sockets  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(socks) and all(s is not None and s.fileno() != -1 for s in socks)


class _Watch:
    """The loop's exception handler, put in front of whatever handled reports before."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.gates: set[AcceptGate] = set()
        self.before = loop.get_exception_handler()
        loop.set_exception_handler(self.handle)

    def add(self, gate: AcceptGate) -> None:
        self.gates.add(gate)

    def discard(self, gate: AcceptGate) -> None:
        self.gates.discard(gate)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if (
            isinstance(exc, OSError)
            and exc.errno in RESOURCE_ERRNOS
            and ("accept" in message or "server" in message)
        ):
            for gate in list(self.gates):
                if gate.owns(context):
                    gate._error(exc)
                    return
        if self.before is not None:
            self.before(loop, context)
        else:
            loop.default_exception_handler(context)


_WATCHES: dict[asyncio.AbstractEventLoop, _Watch] = {}


def _watch(loop: asyncio.AbstractEventLoop) -> _Watch:
    watch = _WATCHES.get(loop)
    if watch is None or loop.get_exception_handler() != watch.handle:
        watch = _WATCHES[loop] = _Watch(loop)
    return watch


def report(gates: Iterator[AcceptGate]) -> dict[str, Any]:
    """The gates' figures by listener name (what a worker sends its main process)."""
    return {g.name: g.figures.report() for g in gates}


class AcceptCollector(Collector):
    """/metrics: every listener's pauses and accept errors (a worker's summed by AcceptTotals)."""

    def __init__(self) -> None:
        self.sources: list[Any] = []  # AcceptGate or AcceptTotals: `name` and `figures`

    def collect(self) -> Iterator[Metric]:
        pauses = CounterMetricFamily(
            "tidegate_accept_pauses",
            "Times a listener stopped accepting (new clients wait in the backlog), by reason",
            labels=["listener", "reason"],
        )
        errors = CounterMetricFamily(
            "tidegate_accept_errors",
            "accept() failures the event loop reported, by errno",
            labels=["listener", "errno"],
        )
        for src in self.sources:
            figs: AcceptFigures = src.figures
            for reason, n in figs.pauses.items():
                pauses.add_metric([src.name, reason], n)
            for name, n in figs.errors.items():
                errors.add_metric([src.name, name], n)
        yield pauses
        yield errors


class AcceptTotals:
    """The main process's sums of its workers' accept figures, as one listener's."""

    def __init__(self, name: str, collector: AcceptCollector) -> None:
        self.name = name
        self.figures = AcceptFigures()
        self._last: dict[int, Mapping[str, Any]] = {}
        self._collector = collector
        collector.sources.append(self)

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        for own in report.values():
            inc = increases(own, self._last.get(worker))
            self._last[worker] = own
            for reason, n in inc.get("pauses", {}).items():
                self.figures.pauses[reason] = self.figures.pauses.get(reason, 0) + int(n)
            for name, n in inc.get("errors", {}).items():
                self.figures.errors[name] = self.figures.errors.get(name, 0) + int(n)

    def close(self) -> None:
        if self in self._collector.sources:
            self._collector.sources.remove(self)
