"""A proxied request's phases and the only moves between them, in the manner of h11's state machine.

An `Exchange` (http/exchange.py) is in exactly one phase; every step of its life is an event,
and `step(phase, event)` is the next phase or `PhaseError` (a bug in the gateway, never the
peer's fault: a peer's bad bytes are attempt failures or cut responses, which are events too).

    the common path:  QUEUED -START-> PICKING -SEND-> SENT -COMPLETE-> DONE   (the fast lane)
    the whole path:   QUEUED -START-> PICKING -CONNECT-> CONNECTING -SEND-> SENT -HOLD-> HELD
                        -HEAD-> STREAMING -COMPLETE-> DONE
    an attempt fails: CONNECTING, SENT, HELD -FAIL-> PICKING (then SEND/CONNECT again, or ANSWER)
    the gateway answers itself: QUEUED, PICKING -ANSWER-> DONE
    a response cut:   HELD, STREAMING -CUT-> BROKEN;   101: STREAMING -UPGRADE-> TUNNEL
    the end, where it stands: every phase but TUNNEL, DONE, BROKEN -ABANDON-> BROKEN

- QUEUED: the head is read and the exchange waits its turn (pipelined answers go out in order).
  Reading the request *body* is not a phase: the body is stored while attempts already run
  (http/body_store.py), so `Request.complete` says whether it has all been read.
- PICKING: between attempts — choosing an instance, or deciding the answer after a failure.
- CONNECTING: no idle connection to the picked instance; a new one is being made.
- SENT: the request head went to the instance; no answer accepted yet. A failure here (or in
  CONNECTING, or HELD) is an attempt failure: nothing reached the client, the retry rules decide.
- HELD: a response was accepted, but its head waits for its short body (http/upstream.py): the
  client has seen nothing yet, so a failure still goes back to PICKING.
- STREAMING: the response is going to the client; from here a failure can only CUT it.
- TUNNEL: the instance answered 101; the client connection carries raw bytes both ways.
- DONE: a whole answer reached the client (the instance's, passed on, or the gateway's own).
- BROKEN: the exchange ended without a whole answer (cut, the client gone, cancelled).

COMPLETE from SENT is the fast lane (http/plain.py): head and body passed on in one step.

Phases and events are small ints (Final: mypyc compiles them to C constants) and the table is
one bytes object indexed by `phase * EVENTS + event`, so a step on the hot path is an index and
a compare. Pure: no sockets, no clock.
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = 0
PICKING: Final = 1
CONNECTING: Final = 2
SENT: Final = 3
HELD: Final = 4
STREAMING: Final = 5
TUNNEL: Final = 6
DONE: Final = 7
BROKEN: Final = 8
PHASE_NAMES: Final = (
    "QUEUED", "PICKING", "CONNECTING", "SENT", "HELD", "STREAMING", "TUNNEL", "DONE", "BROKEN"
)  # fmt: skip
PHASES: Final = len(PHASE_NAMES)

START: Final = 0  # its turn came
CONNECT: Final = 1  # no idle connection: make one
SEND: Final = 2  # the request head was written to the instance
HOLD: Final = 3  # a response was accepted; its head waits for its short body
HEAD: Final = 4  # the response head went to the client
COMPLETE: Final = 5  # the whole response went to the client
FAIL: Final = 6  # the attempt ended with nothing shown to the client
CUT: Final = 7  # the response ended early after bytes may have reached the client
UPGRADE: Final = 8  # 101: the connection becomes a tunnel
ANSWER: Final = 9  # the gateway answered the request itself
ABANDON: Final = 10  # the exchange ends where it stands (client gone, cancelled)
EVENT_NAMES: Final = (
    "START", "CONNECT", "SEND", "HOLD", "HEAD", "COMPLETE", "FAIL", "CUT", "UPGRADE", "ANSWER",
    "ABANDON",
)  # fmt: skip
EVENTS: Final = len(EVENT_NAMES)

FINAL: Final = frozenset({TUNNEL, DONE, BROKEN})  # the last three: `phase >= TUNNEL` is final

# The transitions: (phase, event) -> next phase. Anything not here is a PhaseError.
TRANSITIONS: Final[dict[tuple[int, int], int]] = {
    (QUEUED, START): PICKING,
    (QUEUED, ANSWER): DONE,
    (PICKING, CONNECT): CONNECTING,
    (PICKING, SEND): SENT,
    (PICKING, ANSWER): DONE,
    (CONNECTING, SEND): SENT,
    (CONNECTING, FAIL): PICKING,
    (SENT, HOLD): HELD,
    (SENT, HEAD): STREAMING,
    (SENT, COMPLETE): DONE,
    (SENT, FAIL): PICKING,
    (HELD, HEAD): STREAMING,
    (HELD, COMPLETE): DONE,
    (HELD, FAIL): PICKING,
    (HELD, CUT): BROKEN,
    (STREAMING, COMPLETE): DONE,
    (STREAMING, CUT): BROKEN,
    (STREAMING, UPGRADE): TUNNEL,
    **{(phase, ABANDON): BROKEN for phase in range(PHASES) if phase not in (TUNNEL, DONE, BROKEN)},
}

_NONE: Final = 255


def _flat() -> bytes:
    table = bytearray([_NONE] * (PHASES * EVENTS))
    for (phase, event), to in TRANSITIONS.items():
        table[phase * EVENTS + event] = to
    return bytes(table)


_TABLE: Final = _flat()


class PhaseError(Exception):
    """An event the exchange's phase does not allow: a bug in the gateway."""

    def __init__(self, phase: int, event: int) -> None:
        super().__init__(f"event {EVENT_NAMES[event]} in phase {PHASE_NAMES[phase]}")
        self.phase = phase
        self.event = event


def step(phase: int, event: int) -> int:
    """The phase after `event` in `phase`; PhaseError if the table has no such move."""
    to = _TABLE[phase * EVENTS + event]
    if to == _NONE:
        raise PhaseError(phase, event)
    return to


# The three moves every proxied request makes, each the table's row for its event written out:
# a compare instead of step()'s index arithmetic (55 instructions a step, compiled, measured by
# callgrind). tests/http/test_phases.py checks each against the table in every phase.
def start(phase: int) -> int:
    if phase == QUEUED:
        return PICKING
    raise PhaseError(phase, START)


def send(phase: int) -> int:
    if PICKING <= phase <= CONNECTING:  # PICKING, CONNECTING
        return SENT
    raise PhaseError(phase, SEND)


def complete(phase: int) -> int:
    if SENT <= phase <= STREAMING:  # SENT, HELD, STREAMING
        return DONE
    raise PhaseError(phase, COMPLETE)


def shown(phase: int) -> bool:
    """Whether a response was accepted for the client (held or going out): a failure now is
    judged as one after the response started (it cannot be retried unless it was held)."""
    return HELD <= phase <= STREAMING  # HELD, STREAMING
