"""The old process's side of a self-upgrade, as a state machine with no I/O.

    idle --requested--> spawning --hello--> waiting-ready --ready--> draining --drained--> exited
      ^                    |                    |
      +----- failed -------+--------------------+   (the new process exited, timed out, sent
                                                     something wrong, or could not be started)

`spawning`: the new process is starting (interpreter, imports, config); it says `hello` once it
has read the config and waits for the listening sockets. `waiting-ready`: it has the sockets and
the operator state and starts its services on them (both processes accept from the same queues
meanwhile, so no connection is refused). `ready`: it serves every listener; the old one then
stops accepting and finishes what it has in flight (`draining`), then exits. Any failure before
`ready` stops the new process and the old one goes on serving as if nothing had been asked: an
upgrade never leaves nothing serving. A request while one runs is refused (one at a time).

`step` is the whole decision; `selfupgrade.py` performs the actions it returns.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    IDLE = "idle"
    SPAWNING = "spawning"
    WAITING_READY = "waiting-ready"
    DRAINING = "draining"
    EXITED = "exited"


class Event(StrEnum):
    REQUESTED = "requested"  # SIGUSR2 or POST /api/self-upgrade
    HELLO = "hello"  # the new process read its config and asks for the sockets
    READY = "ready"  # the new process serves every listener
    FAILED = "failed"  # it exited, timed out, or could not be started
    DRAINED = "drained"  # in-flight work here is finished (or the grace is over)


class Action(StrEnum):
    SPAWN = "spawn"  # start the new process
    SEND_STATE = "send-state"  # hand over the listening sockets and the operator state
    COMMIT = "commit"  # the new process is current: pid file, systemd MAINPID, stop accepting
    ABANDON = "abandon"  # stop the new process, log why, go on serving
    REFUSE = "refuse"  # an upgrade is under way already (or this process is leaving)
    HAND_FIGURES = "hand-figures"  # the counters' last increase to the new process
    EXIT = "exit"


_TABLE: dict[tuple[Phase, Event], tuple[Phase, tuple[Action, ...]]] = {
    (Phase.IDLE, Event.REQUESTED): (Phase.SPAWNING, (Action.SPAWN,)),
    (Phase.SPAWNING, Event.HELLO): (Phase.WAITING_READY, (Action.SEND_STATE,)),
    (Phase.SPAWNING, Event.FAILED): (Phase.IDLE, (Action.ABANDON,)),
    (Phase.WAITING_READY, Event.READY): (Phase.DRAINING, (Action.COMMIT,)),
    (Phase.WAITING_READY, Event.FAILED): (Phase.IDLE, (Action.ABANDON,)),
    (Phase.DRAINING, Event.DRAINED): (Phase.EXITED, (Action.HAND_FIGURES, Action.EXIT)),
}


def step(phase: Phase, event: Event) -> tuple[Phase, tuple[Action, ...]]:
    """The next phase and what to do. A request while busy is refused; anything else out of
    order (a late `ready` after a failure, a failure of the new process once it is current)
    changes nothing here: after `commit` the new process is on its own, as nginx's new master."""
    hit = _TABLE.get((phase, event))
    if hit is not None:
        return hit
    if event is Event.REQUESTED:
        return phase, (Action.REFUSE,)
    return phase, ()
