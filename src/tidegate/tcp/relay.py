"""One proxied connection: pick and connect an instance, then move bytes both ways.

Theory of operation
- Accept: the connect starts in `connection_made`, and no task runs it: the event loop's
  `create_connection` coroutine is stepped by hand (`_step`, called back by the future it waits
  on), as a Task would, without a Task's creation, scheduling and bookkeeping per connection.
  Nothing the client sends is forwarded until an instance is connected, so a failed
  connect can be retried elsewhere knowing nothing was sent (`attempts.py` decides where). What
  the client sends meanwhile is held (`pending`), and so is what an instance sends before its
  connect is adopted (`Upstream.early`: a connect that loses the race with its timeout must not
  have relayed anything). Reading is not paused for that, which would cost two epoll changes per
  connection for the usual small first request: only a side that sends more than the high-water
  mark before adoption is paused, and resumed on adoption.
- Relay: plain protocol callbacks, one write per chunk read, nothing allocated per chunk but the
  bytes. Flow control is the uvicorn kind: when one side's write buffer passes its high-water
  mark the transport calls `pause_writing` on that side's protocol, which pauses reading on the
  *other* side; when it drains below the low-water mark, reading resumes. Memory per connection
  is bounded by the two write buffers whatever the volumes.
- Half-close: an EOF (FIN) from one side becomes `write_eof` towards the other, and the other
  direction keeps flowing (`eof_received` returns True to keep the transport). When both sides
  have sent EOF, both are closed. A side lost with an error (reset) aborts the other: a reset
  is passed on as a reset, not dressed up as a clean end.
- Time: a connection arms no timer. The service's sweeper (service.py) calls `check(now)` every
  tick: a connect attempt past its deadline is cancelled (the future it waits on is, as
  Task.cancel does) and retried elsewhere, a connection
  that moved no byte for the idle timeout is closed. Data only sets `moved`; the sweeper turns
  that into a time stamp, so the relay reads no clock per chunk.

Both protocols are plain classes, not `asyncio.Protocol` subclasses, so that mypyc compiles them
to native classes (pyproject.toml `native-modules`); the event loop only calls their methods.
The shell does bookkeeping through its `Listener` (service.py): which connections run, the
figures, the drain cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from tidegate.balancing.instance import Instance
from tidegate.observe.counters import Counters
from tidegate.tcp.attempts import client_key, next_instance, uses_key

if TYPE_CHECKING:
    from tidegate.tcp.service import TcpService as Listener

log = logging.getLogger("tidegate.tcp")


def _discard(data: bytes) -> None:
    pass


def _shut(transport: asyncio.Transport, pending: int) -> None:
    # close() waits for the write buffer to drain; with a peer that reads nothing it never would.
    if pending:
        transport.abort()
    else:
        transport.close()


class Upstream:
    """The instance side of one connection; relays what it reads to the client."""

    __slots__ = (
        "attached",
        "conn",
        "counters",
        "early",
        "early_bytes",
        "early_eof",
        "inst",
        "lost",
        "lost_exc",
        "paused",
        "transport",
    )

    def __init__(self, conn: Connection, inst: Instance) -> None:
        self.conn = conn
        self.inst = inst
        self.counters: Counters = inst.counters
        self.transport: asyncio.Transport | None = None
        self.attached = False
        self.lost = False
        self.lost_exc: Exception | None = None
        self.early: list[bytes] = []  # read before adoption (server-speaks-first protocols)
        self.early_bytes = 0
        self.early_eof = False
        self.paused = False  # reading paused before adoption (too much early data)

    def factory(self) -> asyncio.Protocol:
        return cast(asyncio.Protocol, self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        tr = cast(asyncio.Transport, transport)
        self.transport = tr
        conn = self.conn
        tr.set_write_buffer_limits(conn.high_water)
        header = conn.listener.proxy_header(conn.client)
        if header:
            tr.write(header)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if not self.attached:
            self.early.append(data)
            self.early_bytes += len(data)
            if self.early_bytes > conn.high_water and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            return
        self.counters.bytes_out += len(data)
        conn.moved = True
        if conn.client_writable:
            conn.client_write(data)

    def eof_received(self) -> bool:
        if not self.attached:
            self.early_eof = True
        else:
            self.conn.upstream_eof()
        return True

    def pause_writing(self) -> None:
        conn = self.conn
        if not conn.client_eof and conn.client_open:
            conn.client.pause_reading()

    def resume_writing(self) -> None:
        conn = self.conn
        if not conn.client_eof and conn.client_open:
            conn.client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc
        if self.attached:
            self.conn.upstream_lost(exc)


class Connection:
    """The client side of one connection, and the owner of its state."""

    __slots__ = (
        "abandoned",
        "attempt",
        "client",
        "client_eof",
        "client_open",
        "client_paused",
        "client_writable",
        "client_write",
        "closing",
        "connecting",
        "coro",
        "counters",
        "deadline",
        "done",
        "high_water",
        "idled",
        "inst",
        "key",
        "last",
        "listener",
        "moved",
        "pending",
        "pending_bytes",
        "timed_out",
        "tried",
        "up",
        "upstream",
        "upstream_eof_seen",
        "upstream_open",
        "upstream_writable",
        "upstream_write",
        "waiting",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.high_water: int = listener.high_water
        self.client: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.upstream: asyncio.Transport = None  # type: ignore[assignment]  # set on attach
        # The transports' bound write methods, looked up once, not per chunk.
        self.client_write: Callable[[bytes], None] = _discard
        self.upstream_write: Callable[[bytes], None] = _discard
        self.up: Upstream | None = None
        self.inst: Instance | None = None
        self.counters: Counters | None = None  # the adopted instance's
        self.client_open = False
        self.client_writable = False
        self.client_eof = False
        self.client_paused = False  # reading paused before adoption (too much pending data)
        self.upstream_open = False
        self.upstream_writable = False
        self.upstream_eof_seen = False
        # The connect: attempts until one is adopted or none is left (`connecting` until then).
        self.connecting = False
        self.key: bytes | None = None  # the hash key, for hashing schedulers
        self.tried: list[Instance] = []
        self.attempt: Upstream | None = None  # the attempt under way
        self.coro: Coroutine[Any, Any, Any] | None = None  # its create_connection
        self.waiting: asyncio.Future[Any] | None = None  # what that waits on
        self.deadline = 0.0  # when the attempt under way times out; 0 when none is
        self.timed_out = False  # the sweeper cancelled the attempt
        self.abandoned = False  # the client left, or a cut: no more attempts
        self.last = 0.0  # when the sweeper last saw bytes move
        self.moved = False  # bytes moved since the sweeper last looked
        self.done = False
        self.idled = False  # closed by the idle timeout already
        self.closing = False  # both FINs seen: each side closes once its buffer is flushed
        self.pending: list[bytes] = []  # read from the client before an instance was adopted
        self.pending_bytes = 0

    # --- setup --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)
        self.client = tr
        self.client_write = tr.write
        self.client_open = self.client_writable = True
        tr.set_write_buffer_limits(self.high_water)
        lst = self.listener
        lst.accepted(self)
        if uses_key(lst.pool):
            self.key = client_key(tr.get_extra_info("peername"))
        self.connecting = True
        self._next_attempt()

    def _next_attempt(self) -> None:
        lst = self.listener
        tried = self.tried
        inst = next_instance(lst.pool, self.key, tried, lst.connect_tries)
        if inst is None:
            self.deadline = 0.0
            self.connecting = False
            self.attempt = self.coro = None
            lst.unplaced(self, tried)
            self.client_writable = False
            self.client.abort()
            return
        tried.append(inst)
        counters = inst.counters
        counters.active += 1
        if len(tried) > 1:
            counters.retries += 1
        up = Upstream(self, inst)
        self.attempt = up
        self.timed_out = False
        self.deadline = lst.now() + lst.connect_timeout
        self.coro = lst.loop.create_connection(up.factory, inst.host, inst.port)
        self._step(None)

    def _step(self, _: object) -> None:
        """Run the attempt's coroutine to its next wait, or to its end (also the done callback)."""
        self.waiting = None
        coro, up = self.coro, self.attempt
        assert coro is not None and up is not None
        try:
            if self.abandoned or self.timed_out:
                # Cancelled, even if what it waited on completed first (as a Task would).
                awaited = coro.throw(asyncio.CancelledError())
            else:
                awaited = coro.send(None)
        except StopIteration:
            self.coro = self.attempt = None
            self.deadline = 0.0
            self.listener.pool.report(up.inst, True)
            self._attach(up)
            return
        except asyncio.CancelledError:
            if self.abandoned:
                self._attempt_abandoned(up)
            else:
                self._attempt_failed(up)
            return
        except Exception as exc:
            if not isinstance(exc, OSError):
                log.error("%s: connecting to %s: %r", self.listener.name, up.inst.address, exc)
            self._attempt_failed(up)
            return
        if awaited is None:  # a bare yield: run again on the next turn of the loop
            self.listener.loop.call_soon(self._step, None)
            return
        fut = cast(asyncio.Future[Any], awaited)
        fut._asyncio_future_blocking = False  # as a Task does with what it waits on
        self.waiting = fut
        fut.add_done_callback(self._step)

    def _cancel_attempt(self) -> None:
        # As Task.cancel: the future the coroutine waits on is cancelled, and the coroutine
        # sees CancelledError at its await (and closes what it opened) when stepped next.
        waiting = self.waiting
        if waiting is not None:
            waiting.cancel()

    def _attempt_failed(self, up: Upstream) -> None:
        # A connect that completed just as the timeout fired leaves a transport behind.
        if up.transport is not None:
            up.transport.abort()
        counters = up.counters
        counters.active -= 1
        counters.failures += 1
        self.coro = self.attempt = None
        self.listener.pool.report(up.inst, False)
        if self.abandoned:
            self._attempt_abandoned(None)
        else:
            self._next_attempt()

    def _attempt_abandoned(self, up: Upstream | None) -> None:
        self.deadline = 0.0
        self.coro = self.attempt = None
        if up is not None:
            if up.transport is not None:
                up.transport.abort()
            up.counters.active -= 1
        if self.connecting:
            self.connecting = False
            self._maybe_finish()

    def _attach(self, up: Upstream) -> None:
        self.connecting = False
        assert up.transport is not None
        self.up = up
        self.inst = up.inst
        self.counters = up.counters
        self.upstream = up.transport
        self.upstream_write = up.transport.write
        self.upstream_open = self.upstream_writable = not up.lost
        up.attached = True
        lst = self.listener
        lst.attached(self, up.inst)
        if not self.client_open:
            self._close_both()
            self._maybe_finish()
            return
        self.last = lst.now()
        # What either side sent while the connect was under way goes first, in order.
        if self.pending:
            pending, self.pending = self.pending, []
            for data in pending:
                up.counters.bytes_in += len(data)
                if self.upstream_writable:
                    self.upstream_write(data)
        if self.client_eof:
            self.client_eof = False  # let eof_received pass the half-close on now
            self.eof_received()
        if up.early:
            early, up.early = up.early, []
            for data in early:
                up.data_received(data)
        if up.lost:  # the instance closed (or reset) before the connection was adopted
            self.upstream_lost(up.lost_exc)
            return
        if up.early_eof:
            self.upstream_eof()
        if up.paused and not self.upstream_eof_seen and self.upstream_open:
            self.upstream.resume_reading()
        if self.client_paused and not self.client_eof and self.client_open:
            self.client.resume_reading()
        up.paused = self.client_paused = False

    # --- client → instance --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        counters = self.counters
        if counters is None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > self.high_water and not self.client_paused:
                self.client_paused = True
                self.client.pause_reading()
            return
        counters.bytes_in += len(data)
        self.moved = True
        if self.upstream_writable:
            self.upstream_write(data)

    def eof_received(self) -> bool:
        if self.client_eof:
            return True
        self.client_eof = True
        if self.up is None:
            return True  # passed on when an instance is adopted
        if self.upstream_eof_seen:
            self._close_both()
        elif self.upstream_writable:
            self.upstream_writable = False
            self.upstream.write_eof()
        return True

    def pause_writing(self) -> None:
        if not self.upstream_eof_seen and self.upstream_open:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if not self.upstream_eof_seen and self.upstream_open:
            self.upstream.resume_reading()

    # --- instance → client (called by Upstream) -----------------------------------------------
    def upstream_eof(self) -> None:
        if self.upstream_eof_seen:
            return
        self.upstream_eof_seen = True
        if self.client_eof:
            self._close_both()
        elif self.client_writable:
            self.client_writable = False
            self.client.write_eof()

    # --- ends ---------------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self.client_open = self.client_writable = False
        if self.connecting:
            self.abandoned = True
            self.connecting = False
            self._cancel_attempt()
        if self.upstream_open and not (self.closing and exc is None):
            self.upstream_writable = False
            if exc is None:
                _shut(self.upstream, self.upstream.get_write_buffer_size())
            else:
                self.upstream.abort()
        self._maybe_finish()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.upstream_open = self.upstream_writable = False
        if self.client_open and not (self.closing and exc is None):
            self.client_writable = False
            if exc is None:
                _shut(self.client, self.client.get_write_buffer_size())
            else:
                self.client.abort()
        self._maybe_finish()

    def _close_both(self) -> None:
        # Both sides sent FIN, but either may still be reading what we buffered for it: close()
        # flushes the buffer first (abort would drop its tail). A peer that stops reading is
        # cut by the idle timeout.
        self.client_writable = self.upstream_writable = False
        self.closing = True
        if self.client_open:
            self.client.close()
        if self.upstream_open:
            self.upstream.close()

    def cut(self) -> None:
        """Abort both sides now (drain grace expired, or the service stops)."""
        self.client_writable = self.upstream_writable = False
        if self.connecting:
            self.abandoned = True
            self._cancel_attempt()
        if self.client_open:
            self.client.abort()
        if self.upstream_open:
            self.upstream.abort()

    def check(self, now: float, idle_timeout: float) -> None:
        """The sweeper's look (service.py): the connect deadline, then the idle timeout."""
        if self.done or self.idled:
            return
        if self.connecting:
            if self.deadline and now >= self.deadline and not self.timed_out:
                self.timed_out = True
                self._cancel_attempt()
            return
        if self.moved:
            self.moved = False
            self.last = now
            return
        if idle_timeout <= 0 or now - self.last < idle_timeout or self.up is None:
            return
        self.idled = True
        self.listener.idle_closed(self)
        # Nothing moved for the whole timeout. A side still holding bytes for a peer that reads
        # nothing would never finish a close() (that includes a connection already closing
        # after both FINs): abort it; the others get a FIN.
        self.client_writable = self.upstream_writable = False
        if self.client_open:
            _shut(self.client, self.client.get_write_buffer_size())
        if self.upstream_open:
            _shut(self.upstream, self.upstream.get_write_buffer_size())

    def _maybe_finish(self) -> None:
        if self.done or self.client_open or self.upstream_open or self.connecting:
            return
        self.done = True
        up = self.up
        self.client_write = self.upstream_write = _discard  # no cycle left for the garbage collector
        if up is not None:
            self.up = None
            up.transport = None
        inst = self.inst
        if inst is not None:
            counters = inst.counters
            counters.active -= 1
            counters.completed += 1
        self.listener.finished(self, inst)
