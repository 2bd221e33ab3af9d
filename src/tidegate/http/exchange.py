"""One request's life in the gateway: the attempt loop, and the answer the client gets.

Theory of operation. A client connection queues one `Exchange` per request and runs them strictly
one after another (so pipelined answers go out in order). An attempt is:

    pick an instance (not yet tried) → get a connection (idle, else connect) → send the head,
    stream the body from the body store → wait for the attempt's outcome

The exchange owns the request's phase (http/phases.py: QUEUED, PICKING, CONNECTING, SENT,
HELD, STREAMING, then TUNNEL, DONE or BROKEN); each step is `step(phase, event)`, which refuses a
move the table does not have. The upstream connection reports, and only the exchange moves:
`response_head` (accept or retry the response; drain signals and retryable statuses are decided
here, before anything is forwarded), `head_shown` (a held head went out), `response_done` (the
response went to the client), `attempt_failed` (nothing reached the client: the retry rules may
try again elsewhere) or `response_broken` (bytes went out, so the client's answer is cut). The
client's end is a `ClientSide` (http/client_side.py): HTTP/1.1's connection, or a stream.

Two ways to run, one completion path. The common request — no body, an idle connection to the
picked instance — runs without a task: `start` sends it and the outcome report finishes it (a
task, its future and three coroutine frames per request are most of the gateway's own CPU time).
Everything else, and any retry, runs as a task (`run`): connecting, streaming a body, waiting.
Both end in `_deliver`: the outcome goes to the waiting task, or without one straight through
`_close_attempt` and `_finish`.

Per-instance figures are plain increments here: `active` while an attempt is on the instance,
`completed`, `failures`, `retries`, latency; bytes are counted where they are written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from tidegate.balancing.instance import Instance
from tidegate.balancing.transitions import Event
from tidegate.http.attempts import GIVE_UP_STATUS, BodyError, Decision, Failure, decide
from tidegate.http.phases import (
    ABANDON,
    ANSWER,
    CONNECT,
    CONNECTING,
    CUT,
    FAIL,
    HEAD,
    HELD,
    HOLD,
    QUEUED,
    SENT,
    STREAMING,
    UPGRADE,
    complete,
    send,
    start,
    step,
)
from tidegate.http.phases import TUNNEL as TUNNEL_PHASE
from tidegate.http.request import Request
from tidegate.http.routing import Target
from tidegate.observe.process_log import rfc3339_ms

if TYPE_CHECKING:
    from tidegate.http.client_side import ClientSide
    from tidegate.http.upstream import UpstreamConnection

log = logging.getLogger("tidegate.http")


class _Broken:
    """Outcome of an attempt whose response was cut after bytes reached the client."""


BROKEN: Final = _Broken()
Outcome = Failure | _Broken | None


class _Abandoned:
    """Outcome of an attempt given up by the gateway itself (client gone, cancelled)."""


ABANDONED: Final = _Abandoned()


class Exchange:
    """One request's attempts and answer. Defaults are class attributes, so making one (once per
    request, on the hot path) sets only what differs; there are no `__slots__` for that reason."""

    task: asyncio.Task[None] | None = None
    running = False
    fast = False  # an attempt is in flight without a task (see the module docstring)
    phase = QUEUED  # where the request stands (http/phases.py); every move is step()'s
    finished = False  # _finish ran: the client side has been told
    own_answer = False  # the status is the gateway's own (no instance's response reached the client)
    begun = False
    conn: UpstreamConnection | None = None
    inst: Instance | None = None
    fut: asyncio.Future[Outcome] | None = None
    key: bytes | None = None
    tried: Sequence[Instance] = ()  # a new list once there is something to add
    last: Failure | None = None
    attempt = 0
    started = 0.0
    decided: Decision | None = None
    status = 0
    close_client = False
    closed_by_head = False  # close_client was set by the response head (undone if withdrawn)
    broken = False  # the client stream cannot be trusted / the answer was cut
    body_sent = True
    body_task: asyncio.Task[None] | None = None
    canned = 0  # the gateway's own answer (a status), given before the exchange started
    local_error = 0
    progress = 0  # bumped per body piece sent; with the upstream's reads, the sweeper's clock
    watch = -1
    watch_since = 0.0
    bytes_out = 0
    # A response to it may take the upstream fast lane: no body follows the request, the client
    # speaks keep-alive HTTP/1.1 and expects a body (not HEAD), nothing is upgraded.
    plain = False

    def __init__(
        self, client: ClientSide, req: Request, target: Target | None, plain: bool | None = None
    ) -> None:
        self.client = client
        self.req = req
        self.target = target
        if plain is None:
            if req.body is not None:
                self.body_sent = False
            self.plain = (
                req.complete
                and req.body is None
                and req.upgrade is None
                and not req.is_head
                and req.keep_alive
                and req.version == b"1.1"
            )
        else:
            self.plain = plain

    @classmethod
    def error(cls, client: ClientSide, req: Request, status: int) -> Exchange:
        """An exchange that only answers the gateway's own error and closes the connection."""
        ex = cls(client, req, None)
        ex.canned = ex.status = status
        ex.close_client = ex.broken = True
        return ex

    # --- driven by the client connection ----------------------------------------------------
    def start(self) -> None:
        canned = self.canned
        if canned:
            self.phase = step(self.phase, ANSWER)
            self.own_answer = True
            self.client.answer(canned, True, self.req)
            self.finished = True
            self.client.exchange_done(self)
            return
        self.phase = start(self.phase)
        req = self.req
        client = self.client
        if req.expect_continue and not req.complete:
            client.send_continue()
        target = self.target
        if target is not None and req.body is None and req.upgrade is None:
            self._begin(target)
            self.attempt = 1
            inst = target.pool.pick(self.key, ())
            if inst is not None:
                conn = client.upstreams.acquire(inst)
                if conn is not None:
                    self.fast = True
                    self._open_attempt(inst, req.started)
                    self._send(conn, True)
                    return
                self.task = client.loop.create_task(self.run(inst))
                return
            self.attempt = 0
        self.task = client.loop.create_task(self.run())

    def fail_local(self, status: int) -> None:
        """The client's side of the request went wrong (body too large, bad chunk, spool error)."""
        self.local_error = status
        self.close_client = self.broken = True
        if self.task is None and not self.fast:
            self.canned = self.status = status
        elif self.task is not None and self.running and not self.task.done():
            self.task.cancel()
        # else: the task has not run yet and sees local_error first thing

    def client_gone(self) -> None:
        task = self.task
        if task is not None and not task.done():
            # A task cancelled before its first step never runs its own clean-up.
            if not self.running:
                if self.req.body is not None:
                    self.req.body.abort()
                self._abandon()
            task.cancel()  # a running task ends its phase as it unwinds
        elif self.fast:
            self.fast = False
            if self.conn is not None:
                self.conn.discard()
                self.conn = None
            assert self.inst is not None
            self._close_attempt(self.inst, ABANDONED)
            self._abandon()
        elif task is None:
            if self.req.body is not None:
                self.req.body.abort()
            self._abandon()

    def check(self, now: float, response_timeout: float, client_timeout: float) -> None:
        """Sweeper tick: an attempt where nothing moved for too long has timed out.

        Whose fault decides which clock and what follows. Still reading an upload that the
        instance keeps up with: the client stalls — `idle_timeout`, 408 to it, and the instance
        is not blamed (a trickling client must not get healthy instances ejected). Otherwise the
        instance: `upstream_response_timeout`, a failed attempt (504 or a retry).
        """
        conn = self.conn
        if conn is None or (self.fut is None and not self.fast):
            return
        progress = self.progress + conn.reads
        if progress != self.watch or self.client.write_paused:
            self.watch = progress
            self.watch_since = now
            return
        client_stalls = not self.req.complete and not conn.write_paused and not conn.committed
        if now - self.watch_since < (client_timeout if client_stalls else response_timeout):
            return
        if client_stalls:
            self.fail_local(408)
        elif self.phase == STREAMING:
            conn.discard()
            self.response_broken(conn)
        else:
            conn.discard()
            self.attempt_failed(conn, Failure.RESPONSE_TIMEOUT)  # a held head is withdrawn

    # --- the attempt loop -------------------------------------------------------------------
    async def run(self, first: Instance | None = None) -> None:
        client = self.client
        self.running = True
        try:
            if self.local_error:
                self._answer(self.local_error)
                return
            await self._proxy(first)
        except asyncio.CancelledError:
            if self.local_error and not client.closed:
                if HELD <= self.phase <= STREAMING:  # a response was accepted for the client
                    self.broken = True
                else:
                    self._answer(self.local_error)
        except Exception:
            log.exception("proxying %r", self.req.url)
            if HELD <= self.phase <= STREAMING:
                self.broken = self.close_client = True
            else:
                self._answer(500)
        finally:
            self._finish()

    def _begin(self, target: Target) -> None:
        if not self.begun:
            self.begun = True
            if target.key is not None:
                self.key = target.key(self.req, self.client.peer)
            target.budget.record_request(self.req.started)

    async def _proxy(self, first: Instance | None) -> None:
        target = self.target
        if target is None:
            self._answer(502)
            return
        self._begin(target)
        pool = target.pool
        tried = self.tried
        inst: Instance | None
        while True:
            if first is not None:
                inst, first = first, None
            else:
                self.attempt += 1
                inst = pool.pick(self.key, tried)
                if inst is None:
                    # Nothing eligible (left): the last failure's answer, if there was one.
                    last = self.last
                    self._answer((GIVE_UP_STATUS.get(last) or 502) if last is not None else 502)
                    return
            outcome = await self._attempt(inst)
            if outcome is None or outcome is BROKEN:
                return
            assert isinstance(outcome, Failure)
            decision = self.decided or self._decide(outcome, None)
            if not decision.retry:
                self._answer(decision.status or 502)
                return
            tried = self.tried = [*tried, inst]
            self.last = outcome

    def _decide(self, failure: Failure, status: int | None) -> Decision:
        """decide() with the pool's budget: a token is spent only for a retry really made."""
        target = self.target
        assert target is not None
        budget = target.budget
        method = self.req.method
        self.req.fill_names()
        keyed = b"idempotency-key" in self.req.names  # failure path only: a list scan is fine
        started = HELD <= self.phase <= STREAMING
        d = decide(target.policy, failure, method, self.attempt, status, started, True, keyed)
        if d.retry:
            now = self.client.loop.time()
            if budget.can_spend(now):
                budget.spend(now)
            else:
                d = decide(target.policy, failure, method, self.attempt, status, started, False, keyed)
        return d

    def _open_attempt(self, inst: Instance, now: float = -1.0) -> None:
        # In service from the pick on, connecting included: least-connections and p2c must see
        # a request that is still connecting, or a burst all lands on one instance.
        self.inst = inst
        self.decided = None
        c = inst.counters
        c.active += 1
        if self.attempt > 1:
            c.retries += 1
        # The first attempt of a request taken at once starts when the request came (`now`).
        self.started = now if now >= 0 else self.client.loop.time()

    def _close_attempt(self, inst: Instance, outcome: Outcome | _Abandoned, now: float = -1.0) -> None:
        c = inst.counters
        c.active -= 1
        if outcome is None:
            c.completed += 1
            c.count_status(self.status)
            c.record_latency((now if now >= 0 else self.client.loop.time()) - self.started)
            self.target.pool.report(inst, True)  # type: ignore[union-attr]
        elif outcome is not ABANDONED:
            c.failures += 1
            self.target.pool.report(inst, False)  # type: ignore[union-attr]

    def _send(self, conn: UpstreamConnection, reused: bool) -> None:
        self.phase = send(self.phase)
        self.conn = conn
        self.watch = -1
        conn.bind(self, reused)
        req = self.req
        head = req.head
        conn.transport.write(head)
        conn.inst.counters.bytes_in += len(head)
        if req.body is not None:
            self.body_sent = False
            self.body_task = self.client.loop.create_task(self._send_body(conn))

    async def _attempt(self, inst: Instance) -> Outcome:
        client = self.client
        upstreams = client.svc.upstreams
        self._open_attempt(inst)
        outcome: Outcome | _Abandoned = ABANDONED
        try:
            conn = upstreams.acquire(inst)
            reused = conn is not None
            if conn is None:
                self.phase = step(self.phase, CONNECT)
                try:
                    conn = await upstreams.connect(inst, client.plan.connect_timeout)
                except TimeoutError:
                    outcome = Failure.CONNECT_TIMEOUT
                    return outcome
                except OSError:
                    outcome = Failure.CONNECT_FAILED
                    return outcome
            fut: asyncio.Future[Outcome] = client.loop.create_future()
            self.fut = fut
            self._send(conn, reused)
            outcome = await fut
            return outcome
        finally:
            self.fut = None
            phase = self.phase
            if CONNECTING <= phase <= SENT:  # CONNECTING, SENT
                # No outcome reported (connect failed; cancelled, or an error): nothing was shown.
                self.phase = step(phase, FAIL)
            if self.body_task is not None:
                if not self.body_task.done():
                    self.body_task.cancel()
                self.body_task = None
            self._close_attempt(inst, outcome)

    def _finish(self, now: float = -1.0) -> None:
        """The exchange is over: release what it holds, log it, tell the client side."""
        if self.finished:
            return
        self.finished = True
        if self.phase < TUNNEL_PHASE:  # not final: it ended where it stood
            self._abandon()
        if self.conn is not None:
            self.conn.discard()
            self.conn = None
        if self.body_task is not None and not self.body_task.done():
            self.body_task.cancel()
        if self.req.body is not None:
            self.req.body.close()
        client = self.client
        if client.svc.access_log is not None:
            self._log()
        if not client.closed:
            client.exchange_done(self, now)

    def _abandon(self) -> None:
        phase = self.phase
        if phase < TUNNEL_PHASE:  # not final (TUNNEL, DONE, BROKEN are the last three)
            self.phase = step(phase, ABANDON)

    async def _send_body(self, conn: UpstreamConnection) -> None:
        store = self.req.body
        assert store is not None
        chunked = self.req.content_length is None
        tr = conn.transport
        counters = conn.inst.counters
        try:
            async for chunk in store.reader():
                if conn.closed or self.conn is not conn:
                    return
                n = len(chunk)
                if chunked:
                    size_line = b"%x\r\n" % n
                    tr.writelines((size_line, chunk, b"\r\n"))
                    n += len(size_line) + 2
                else:
                    tr.write(chunk)
                counters.bytes_in += n
                self.progress += 1
                if conn.write_paused:
                    await conn.drained()
        except BodyError:
            return  # the client side failed (and answers that) or the exchange is over
        if chunked and not conn.closed and self.conn is conn:
            tr.write(b"0\r\n\r\n")
            counters.bytes_in += 5
        self.body_sent = True

    # --- outcomes: the upstream connection reports, the exchange moves --------------------
    # One completion path for both ways of running: the outcome goes to the task waiting for it,
    # or, without a task (the fast lane), straight to _close_attempt and _finish.
    def _deliver(self, outcome: Outcome, now: float = -1.0) -> None:
        fut = self.fut
        if fut is not None:
            if not fut.done():
                fut.set_result(outcome)
        elif self.fast:
            self.fast = False
            inst = self.inst
            assert inst is not None
            self._close_attempt(inst, outcome, now)
            if outcome is not None and outcome is not BROKEN:
                assert isinstance(outcome, Failure)
                decision = self.decided or self._decide(outcome, None)
                if decision.retry:
                    # Retries (connecting, waiting) need the task after all.
                    self.tried = [*self.tried, inst]
                    self.last = outcome
                    self.task = self.client.loop.create_task(self.run())
                    return
                self._answer(decision.status or 502)
            self._finish(now)

    def response_head(self, conn: UpstreamConnection, status: int) -> None:
        """The instance's response head is parsed: retry it, or accept it for the client."""
        target = self.target
        assert target is not None and self.inst is not None
        failure = None
        if status == 503 and conn.draining:
            # The drain signal: the instance promises it did not process the request.
            failure = Failure.DRAIN_SIGNAL
        elif status in target.policy.statuses:
            failure = Failure.STATUS
        if failure is not None:
            d = self._decide(failure, status)
            if d.drain:
                target.pool.apply(self.inst, Event.DRAIN_SIGNAL, "drain signal")
            if not d.pass_through:
                self.decided = d
                conn.discard()
                self.attempt_failed(conn, failure)
                return
        req = self.req
        client = self.client
        close = not req.keep_alive or not req.complete or client.last_answer(self)
        if req.upgrade is not None and status != 101:
            close = True
        if conn.commit(client, status, req.version == b"1.0", req.is_head, close, req.rid):
            self.close_client = self.closed_by_head = True
        self.phase = step(self.phase, HOLD if conn.hold_head else HEAD)
        self.status = status
        if client.write_paused:
            conn.pause_reading()

    def head_shown(self) -> None:
        """The held head went to the client (with the first piece of its body)."""
        self.phase = step(self.phase, HEAD)

    def pause_upstream(self) -> None:
        """The client side's buffer is full: stop reading the response from the instance."""
        conn = self.conn
        if conn is not None:
            conn.pause_reading()

    def resume_upstream(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.resume_reading()

    def plain_response(self, conn: UpstreamConnection, status: int, out: bytes, reusable: bool) -> None:
        """The upstream fast lane (http/plain.py) has a whole plain response: pass it on."""
        self.status = status
        n = len(out)
        self.client.transport.write(out)
        conn.inst.counters.bytes_out += n
        self.response_done(conn, reusable, n, self.client.loop.time())

    def response_done(
        self, conn: UpstreamConnection, reusable: bool, out_bytes: int, now: float = -1.0
    ) -> None:
        """The whole response went to the client (`out_bytes` of it)."""
        self.phase = complete(self.phase)
        self.bytes_out += out_bytes
        self.conn = None
        if reusable and self.body_sent:
            self.client.upstreams.release(conn, now)
        else:
            conn.discard()
        self._deliver(None, now)

    def attempt_failed(self, conn: UpstreamConnection, failure: Failure) -> None:
        """The attempt failed with nothing shown to the client (a held head is withdrawn)."""
        if self.phase == HELD:
            # Undo what response_head decided: the attempt is judged as one that got no answer.
            self.status = 0
            if self.closed_by_head:
                self.close_client = self.closed_by_head = False
        self.phase = step(self.phase, FAIL)
        self.conn = None
        conn.discard()
        self._deliver(failure)

    def response_broken(self, conn: UpstreamConnection) -> None:
        self.phase = step(self.phase, CUT)
        self.conn = None
        conn.discard()
        self.broken = self.close_client = True
        self._deliver(BROKEN)

    def tunnel_open(self, conn: UpstreamConnection, out_bytes: int) -> None:
        """The instance answered 101: from now on bytes flow raw both ways (WebSocket etc.)."""
        self.phase = step(self.phase, UPGRADE)
        self.bytes_out += out_bytes
        self.conn = None
        self.client.open_tunnel(conn)
        self._deliver(None)

    # --- the gateway's own answers ----------------------------------------------------------
    def _answer(self, status: int) -> None:
        req = self.req
        client = self.client
        close = not req.complete or not req.keep_alive or self.broken or client.last_answer(self)
        self.phase = step(self.phase, ANSWER)
        self.own_answer = True
        self.status = status
        if close:
            self.close_client = True
        self.bytes_out += client.answer(status, close, req)

    def _log(self) -> None:
        # Only called with the access log on: nothing here costs a request when it is off.
        req = self.req
        client = self.client
        inst = self.inst
        now = client.loop.time()
        entry = {
            "time": rfc3339_ms(time.time()),
            "request_id": req.rid.decode("ascii") if req.rid else None,
            "client": client.peer.decode(),
            "method": req.method.decode("latin-1"),
            "host": req.host.decode("latin-1") if req.host is not None else None,
            "path": req.url.decode("latin-1"),
            "http_version": req.version.decode("latin-1"),
            "status": self.status,
            "pool": self.target.name if self.target is not None else None,
            "upstream": inst.address if inst is not None else None,
            # None when no response came from an instance (the gateway answered: 502, 504…).
            "upstream_status": self.status if self.status and not self.own_answer else None,
            "tries": self.attempt,
            "duration_ms": round((now - req.started) * 1000.0, 3),
            # The last try, from picking the instance (connecting included) to the answer's end.
            "upstream_ms": round((now - self.started) * 1000.0, 3) if inst is not None else None,
            "bytes_in": req.body_bytes,
            "bytes_out": self.bytes_out,
        }
        if self.broken:
            entry["broken"] = True
        if client.tls_info is not None:
            entry["tls"], entry["cipher"] = client.tls_info
        access_log = client.svc.access_log
        if access_log is not None:
            access_log.write(json.dumps(entry, separators=(",", ":")))
