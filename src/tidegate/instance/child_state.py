"""The life of one supervised instance process, as a transition table (no processes here).

Theory of operation: the supervisor starts a process (`starting`); it is `running` once it prints
its listening line. A process that exits without being asked has crashed: it waits in `backoff`
(a delay that doubles with each crash in a row, see `crash_delay`) and is started again. A
restart asked through the control endpoint sends SIGTERM (`exiting`): the instance drains and
exits, and the supervisor starts it again at once with the code now on disk. `stopping` is the
supervisor's own exit: nothing is started again. Pairs not in the table leave the state alone.
"""

from __future__ import annotations

from enum import StrEnum


class ChildState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    EXITING = "exiting"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ChildEvent(StrEnum):
    LISTENING = "listening"  # the process printed its listening line
    EXITED = "exited"  # the process is gone
    RESTART = "restart"  # the control endpoint asked for a restart
    BACKOFF_OVER = "backoff-over"
    STOP = "stop"  # the supervisor is exiting


class Action(StrEnum):
    NONE = "none"
    SPAWN = "spawn"  # start a new process (the code now on disk)
    TERMINATE = "terminate"  # SIGTERM: the instance drains and exits
    WAIT_BACKOFF = "wait-backoff"  # schedule BACKOFF_OVER after crash_delay()


S, E, A = ChildState, ChildEvent, Action
TRANSITIONS: dict[tuple[ChildState, ChildEvent], tuple[ChildState, Action]] = {
    (S.STARTING, E.LISTENING): (S.RUNNING, A.NONE),
    (S.STARTING, E.EXITED): (S.BACKOFF, A.WAIT_BACKOFF),
    (S.STARTING, E.RESTART): (S.EXITING, A.TERMINATE),
    (S.STARTING, E.STOP): (S.STOPPING, A.TERMINATE),
    (S.RUNNING, E.EXITED): (S.BACKOFF, A.WAIT_BACKOFF),
    (S.RUNNING, E.RESTART): (S.EXITING, A.TERMINATE),
    (S.RUNNING, E.STOP): (S.STOPPING, A.TERMINATE),
    (S.EXITING, E.EXITED): (S.STARTING, A.SPAWN),
    (S.EXITING, E.STOP): (S.STOPPING, A.NONE),  # SIGTERM already sent
    (S.BACKOFF, E.BACKOFF_OVER): (S.STARTING, A.SPAWN),
    (S.BACKOFF, E.RESTART): (S.STARTING, A.SPAWN),
    (S.BACKOFF, E.STOP): (S.STOPPED, A.NONE),
    (S.STOPPING, E.EXITED): (S.STOPPED, A.NONE),
}


def transition(state: ChildState, event: ChildEvent) -> tuple[ChildState, Action]:
    return TRANSITIONS.get((state, event), (state, Action.NONE))


# A process that ran this long before crashing starts a fresh count of crashes in a row.
STABLE_AFTER = 10.0


def crash_delay(crashes_in_a_row: int, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before starting a crashed process again: 0.1, 0.2, 0.4 … up to 5."""
    if crashes_in_a_row <= 0:
        return 0.0
    return min(cap, first * 2.0 ** min(crashes_in_a_row - 1, 30))
