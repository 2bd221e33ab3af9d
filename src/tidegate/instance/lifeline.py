"""What ties an instance to its supervisor, and what ends its drain whatever became of it.

An instance under `tidegate serve` writes its output into a pipe the supervisor reads. When the
supervisor dies (SIGKILL, OOM) two things must still hold:
- the instance learns of it: PR_SET_PDEATHSIG turns the parent's death into a SIGHUP, which
  starts the usual drain (a signal that arrives while the instance is stopped waits for SIGCONT).
  Not SIGTERM: a second SIGTERM means "stop waiting", and a drain under way when the supervisor
  dies must still give in-flight requests their grace;
- the drain ends. The pipe has no reader any more, so every write to stdout/stderr fails with
  EPIPE: an exception in the SIGTERM handler used to leave the instance in its drain forever,
  answering 503. So output goes to /dev/null once the parent is gone, and a drain carries a hard
  deadline kept by a thread (not the event loop, which a stuck app may hold), after which the
  process exits however far its shutdown got.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

PARENT_ENV = "TIDEGATE_PARENT_PID"  # set by the supervisor in its instances' environment
_PR_SET_PDEATHSIG = 1

# Exit status when the hard deadline ends a drain (the orderly path exits 0).
DEADLINE_EXIT = 70


def expected_parent() -> int | None:
    parent = os.environ.get(PARENT_ENV, "")
    return int(parent) if parent.isdigit() else None


def die_with_parent() -> None:
    """Under a supervisor: get SIGHUP (and so drain) when it dies without stopping us (Linux)."""
    parent = expected_parent()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGHUP)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGHUP)


def orphaned() -> bool:
    """True when this instance had a supervisor and it is gone (we were reparented)."""
    parent = expected_parent()
    return parent is not None and os.getppid() != parent


def silence_output() -> None:
    """Point stdout and stderr at /dev/null: their reader is gone, and a write would fail."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)


def say(text: str) -> None:
    """A line on stderr that never raises (the pipe may have lost its reader meanwhile)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        silence_output()


def exit_after(after: float, reason: str) -> None:
    """Exit the process `after` seconds from now, whatever the event loop is doing then."""

    def watch() -> None:
        threading.Event().wait(after)
        say(f"tidegate: instance drain not finished {after:g} s after {reason}: exiting now")
        os._exit(DEADLINE_EXIT)

    threading.Thread(target=watch, name="tidegate-drain-deadline", daemon=True).start()
