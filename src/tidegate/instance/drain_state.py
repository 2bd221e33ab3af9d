"""The one object that owns "this instance is exiting", shared by the middleware and the runtime.

Theory of operation: an instance is either serving or exiting, and only ever goes one way. While
serving, requests reach the app and `active` counts those in progress. Once exiting, new requests
get the drain signal instead (they never reach the app), requests already in progress finish, and
whoever owns the server (the drain runtime, or the user's own server) shuts it down after the
drain window. Requests still running when the grace period ends are cancelled and counted in `cut`.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class DrainState:
    __slots__ = ("_listeners", "active", "cut", "exiting", "exiting_since", "reason", "refused", "served")

    def __init__(self) -> None:
        self.exiting = False
        self.exiting_since: float | None = None  # time.monotonic() when exiting began
        self.reason = ""
        self.active = 0  # requests in the app right now
        self.served = 0  # requests the app finished (whatever their status)
        self.refused = 0  # requests answered with the drain signal
        self.cut = 0  # requests cancelled because the grace period ran out
        self._listeners: list[Callable[[DrainState], None]] = []

    def on_exiting(self, listener: Callable[[DrainState], None]) -> None:
        """Call `listener` once when exiting begins (at once if it already has)."""
        if self.exiting:
            listener(self)
        else:
            self._listeners.append(listener)

    def begin(self, reason: str = "asked to exit") -> bool:
        """Enter the exiting state; False when it was already exiting (a second call is a no-op)."""
        if self.exiting:
            return False
        self.exiting = True
        self.exiting_since = time.monotonic()
        self.reason = reason
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener(self)
        return True

    def summary(self) -> str:
        return f"served {self.served}, refused {self.refused} with the drain signal, cut {self.cut}"
