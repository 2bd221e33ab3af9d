"""One proxied connection: pick and connect an instance, then move bytes both ways.

Theory of operation
- Accept: nothing the client sends is forwarded until an instance is connected, so a failed
  connect can be retried elsewhere knowing nothing was sent (`attempts.py` decides where). The
  client side is paused at once; uvloop starts reading after `connection_made` whatever the
  protocol asked, so a first chunk read early is held (reading paused again) and written first
  on adoption. The instance side is held the same way until the connect is adopted: a connect
  that loses the race with its timeout must not have relayed anything.
- Relay: plain `asyncio.Protocol` callbacks, one write per chunk read. Flow control is the
  uvicorn kind: when one side's write buffer passes its high-water mark the transport calls
  `pause_writing` on that side's protocol, which pauses reading on the *other* side; when it
  drains below the low-water mark, reading resumes. Memory per connection is bounded by the
  two write buffers whatever the volumes.
- Half-close: an EOF (FIN) from one side becomes `write_eof` towards the other, and the other
  direction keeps flowing (`eof_received` returns True to keep the transport). When both sides
  have sent EOF, both are closed. A side lost with an error (reset) aborts the other: a reset
  is passed on as a reset, not dressed up as a clean end.
- Idle: one timer per connection, re-armed lazily: data only stamps `last`; when the timer fires
  it either re-arms for the remainder or closes the connection.

The shell does bookkeeping through its `Listener` (service.py): which connections run on which
instance (so a drained instance's connections can be cut after the grace), and the figures.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from tidegate.balancing.instance import Instance
from tidegate.tcp.attempts import client_key, next_instance

if TYPE_CHECKING:
    from tidegate.tcp.service import TcpService as Listener


def _shut(transport: asyncio.BaseTransport, pending: int) -> None:
    # close() waits for the write buffer to drain; with a peer that reads nothing it never would.
    if pending:
        transport.abort()  # type: ignore[attr-defined]
    else:
        transport.close()


class Upstream(asyncio.Protocol):
    """The instance side of one connection; relays what it reads to the client."""

    __slots__ = (
        "attached",
        "conn",
        "counters",
        "early",
        "early_eof",
        "inst",
        "lost",
        "lost_exc",
        "transport",
    )

    def __init__(self, conn: Connection, inst: Instance) -> None:
        self.conn = conn
        self.inst = inst
        self.counters = inst.counters
        self.transport: asyncio.Transport | None = None
        self.attached = False
        self.lost = False
        self.lost_exc: Exception | None = None
        self.early: list[bytes] = []  # read before adoption (server-speaks-first protocols)
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(self.conn.listener.high_water)
        transport.pause_reading()
        header = self.conn.listener.proxy_header(self.conn.client, transport)
        if header:
            transport.write(header)

    def data_received(self, data: bytes) -> None:
        if not self.attached:
            self.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        conn = self.conn
        self.counters.bytes_out += len(data)
        conn.last = conn.listener.now()
        if conn.client_writable:
            conn.client.write(data)

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


class Connection(asyncio.Protocol):
    """The client side of one connection, and the owner of its state."""

    __slots__ = (
        "client",
        "client_eof",
        "client_open",
        "client_writable",
        "closing",
        "connecting",
        "done",
        "idle_handle",
        "inst",
        "last",
        "listener",
        "pending",
        "up",
        "upstream",
        "upstream_eof_seen",
        "upstream_open",
        "upstream_writable",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.client: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.upstream: asyncio.Transport = None  # type: ignore[assignment]  # set on attach
        self.up: Upstream | None = None
        self.inst: Instance | None = None
        self.client_open = False
        self.client_writable = False
        self.client_eof = False
        self.upstream_open = False
        self.upstream_writable = False
        self.upstream_eof_seen = False
        self.connecting: asyncio.Task[None] | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.last = 0.0
        self.done = False
        self.closing = False  # both FINs seen: each side closes once its buffer is flushed
        self.pending: list[bytes] = []  # read from the client before an instance was adopted

    # --- setup --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.client = transport
        self.client_open = self.client_writable = True
        transport.pause_reading()
        transport.set_write_buffer_limits(self.listener.high_water)
        self.listener.accepted(self)
        self.connecting = self.listener.loop.create_task(self._connect())

    async def _connect(self) -> None:
        lst = self.listener
        pool = lst.pool
        key = client_key(self.client.get_extra_info("peername"))
        tried: list[Instance] = []
        while (inst := next_instance(pool, key, tried, lst.connect_tries)) is not None:
            tried.append(inst)
            counters = inst.counters
            counters.active += 1
            if len(tried) > 1:
                counters.retries += 1
            up = Upstream(self, inst)
            try:
                async with asyncio.timeout(lst.connect_timeout):
                    await lst.loop.create_connection(lambda up=up: up, inst.host, inst.port)  # type: ignore[misc]
            except (OSError, TimeoutError):
                # A connect that completed just as the timeout fired leaves a transport behind.
                if up.transport is not None:
                    up.transport.abort()
                counters.active -= 1
                counters.failures += 1
                pool.report(inst, False)
                continue
            except BaseException:  # cancelled: the client left while we were connecting
                if up.transport is not None:
                    up.transport.abort()
                counters.active -= 1
                raise
            pool.report(inst, True)
            self._attach(up)
            return
        self.connecting = None
        lst.unplaced(self, tried)
        self.client_writable = False
        self.client.abort()

    def _attach(self, up: Upstream) -> None:
        self.connecting = None
        assert up.transport is not None
        self.up = up
        self.inst = up.inst
        self.upstream = up.transport
        self.upstream_open = self.upstream_writable = not up.lost
        up.attached = True
        self.listener.attached(self, up.inst)
        if not self.client_open:
            self._close_both()
            self._maybe_finish()
            return
        self.last = self.listener.now()
        idle = self.listener.idle_timeout
        if idle > 0:
            self.idle_handle = self.listener.loop.call_at(self.last + idle, self._idle_check)
        # What either side sent while the connect was under way goes first, in order.
        pending, self.pending = self.pending, []
        for data in pending:
            up.counters.bytes_in += len(data)
            if self.upstream_writable:
                self.upstream.write(data)
        if self.client_eof:
            self.client_eof = False  # let eof_received pass the half-close on now
            self.eof_received()
        early, up.early = up.early, []
        for data in early:
            up.data_received(data)
        if up.lost:  # the instance closed (or reset) before the connection was adopted
            self.upstream_lost(up.lost_exc)
            return
        if up.early_eof:
            self.upstream_eof()
        if not self.upstream_eof_seen and self.upstream_open:
            self.upstream.resume_reading()
        if not self.client_eof and self.client_open:
            self.client.resume_reading()

    # --- client → instance --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        up = self.up
        if up is None:
            self.pending.append(data)
            self.client.pause_reading()
            return
        up.counters.bytes_in += len(data)
        self.last = self.listener.now()
        if self.upstream_writable:
            self.upstream.write(data)

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
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
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
        # cut by the idle timer.
        self.client_writable = self.upstream_writable = False
        self.closing = True
        if self.client_open:
            self.client.close()
        if self.upstream_open:
            self.upstream.close()

    def cut(self) -> None:
        """Abort both sides now (drain grace expired, or the service stops)."""
        self.client_writable = self.upstream_writable = False
        if self.connecting is not None:
            self.connecting.cancel()
        if self.client_open:
            self.client.abort()
        if self.upstream_open:
            self.upstream.abort()

    def _idle_check(self) -> None:
        self.idle_handle = None
        if self.done:
            return
        lst = self.listener
        due = self.last + lst.idle_timeout
        if due > lst.now():
            self.idle_handle = lst.loop.call_at(due, self._idle_check)
            return
        lst.idle_closed(self)
        # Nothing moved for the whole timeout. A side still holding bytes for a peer that reads
        # nothing would never finish a close() (that includes a connection already closing
        # after both FINs): abort it; the others get a FIN.
        self.client_writable = self.upstream_writable = False
        if self.client_open:
            _shut(self.client, self.client.get_write_buffer_size())
        if self.upstream_open:
            _shut(self.upstream, self.upstream.get_write_buffer_size())

    def _maybe_finish(self) -> None:
        if self.done or self.client_open or self.upstream_open or self.connecting is not None:
            return
        self.done = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        inst = self.inst
        if inst is not None:
            inst.counters.active -= 1
            inst.counters.completed += 1
        self.listener.finished(self, inst)
