"""Find the processes a test session started that are still alive, wherever they now hang.

A marker variable set in the session's own environment is inherited by everything it starts,
including the grandchildren whose parent died (reparented to init, out of any child walk), and
it tells this session's processes apart from those of another pytest running on the same box.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MARK = "TIDEGATE_TEST_SESSION"
NODE = "TIDEGATE_TEST_NODE"  # the test that was running when the process was started


@dataclass(frozen=True)
class Leftover:
    pid: int
    argv: str
    started_in: str

    def __str__(self) -> str:
        return f"pid {self.pid} started in {self.started_in or '(session setup)'}: {self.argv}"


def mark_session() -> str:
    """Give this process (and so every process it starts from now) a fresh session marker."""
    token = uuid.uuid4().hex
    os.environ[MARK] = token
    return token


def _environ(pid: str) -> dict[bytes, bytes]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    found: dict[bytes, bytes] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            found[key] = value
    return found


def _alive(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited; its parent reaps it


def leftovers(token: str) -> list[Leftover]:
    """The live processes (other than this one) that carry the session marker `token`."""
    me, mark = str(os.getpid()), token.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        env = _environ(entry)
        if env.get(MARK.encode()) != mark or not _alive(entry):
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(Leftover(int(entry), argv.strip(), env.get(NODE.encode(), b"").decode(errors="replace")))
    return found


def wait_gone(token: str, timeout: float) -> list[Leftover]:
    """The leftovers still alive after up to `timeout` seconds (processes finishing a graceful
    stop get that long to end on their own)."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(token)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)  # polling /proc: there is no event for "a non-child exited"


def kill(found: list[Leftover]) -> None:
    for p in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
