"""The optional access log: one JSON object per request, to a file or stdout ("-").

Off by default; when off the exchange does not build the entry at all.

A request only appends its line to a buffer: the buffer goes out in one write every
FLUSH_EVERY seconds (a timer armed by the first line after a flush), when it holds MAX_LINES,
and at stop, so no request waits on the file. `reopen()` (SIGUSR1, from the runtime) flushes,
closes and opens the path again: logrotate moves the file away and signals, without
`copytruncate` and without losing lines.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

FLUSH_EVERY = 0.2  # seconds a line may wait in the buffer
MAX_LINES = 512  # a burst is written at once past this, not held

log = logging.getLogger("tidegate.http")


class AccessLog:
    def __init__(self, target: str) -> None:
        self.target = target
        self._own = target != "-"
        self._out: TextIO = self._open()
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def _open(self) -> TextIO:
        if not self._own:
            return sys.stdout
        return open(self.target, "a", encoding="utf-8")

    def write(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        if len(lines) >= MAX_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)
            except RuntimeError:  # no loop (a tool writing once): at once
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines = []
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # a full disk or a closed stdout loses lines, not requests
            pass

    def reopen(self) -> None:
        """Write what is buffered and open the path again (the file may have been moved)."""
        self.flush()
        if not self._own:
            return
        try:
            fresh = self._open()
        except OSError as exc:  # keep writing where we were rather than lose lines
            log.warning("access log %s: cannot open it again (%s); still writing the old file", self.target, exc)
            return
        self._out.close()
        self._out = fresh

    def close(self) -> None:
        self.flush()
        if self._own:
            self._out.close()
