"""Run a tidegate (or any) process in a test and wait on its log lines, never on sleeps."""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2])

_LISTEN = re.compile(r"tidegate: (\S+) listening on (\S+)")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: this tree's src first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class Proc:
    """A child process whose stderr (merged with stdout) is read line by line in a thread."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None):
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env if env is not None else child_env(),
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self.listening: dict[str, str] = {}  # before the reader starts: it fills this
        self._q: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            m = _LISTEN.search(line)
            if m:
                self.listening.setdefault(m.group(1), m.group(2))
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Block until a line matching `pattern` appears; raise with the output so far if not."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got = self._q.get(timeout=left)
            except queue.Empty:
                break
            if got is None:
                raise AssertionError(
                    f"process exited ({self.popen.wait()}) before {pattern!r}:\n" + self.output()
                )
            m = rx.search(got)
            if m:
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + self.output())

    def wait_for_new(self, pattern: str, since: int, timeout: float = 20.0) -> re.Match[str]:
        """Like wait_for, but only lines from index `since` on count (mark = len(proc.lines)
        before an action, then wait for what the action printed, not an older line alike)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[since:]:  # the reader appends a line before it queues it
                m = rx.search(line)
                if m:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no new line matching {pattern!r} within {timeout}s:\n" + self.output())
            try:
                if self._q.get(timeout=left) is None:
                    self._q.put(None)  # for the next waiter too
                    raise AssertionError(
                        f"process exited ({self.popen.wait()}) before {pattern!r}:\n" + self.output()
                    )
            except queue.Empty:
                pass

    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    def address(self, name: str) -> tuple[str, int]:
        host, _, port = self.listening[name].rpartition(":")
        return host.strip("[]"), int(port)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        if self.popen.stdout is not None and not self._reader.is_alive():
            self.popen.stdout.close()  # else a ResourceWarning, an error under filterwarnings
        return self.popen.returncode


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that need not be our child (an orphaned grandchild) to end: on a
    pidfd, which becomes readable when it exits. False if it still runs after `timeout`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def reap(pids: Sequence[int], timeout: float = 10.0) -> list[int]:
    """Make sure processes a test left to end on their own are gone: wait up to `timeout` for
    each, SIGKILL what is left; returns the pids that had to be killed."""
    deadline = time.monotonic() + timeout
    killed = []
    for pid in pids:
        if not wait_exit(pid, max(0.0, deadline - time.monotonic())):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def tidegate(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
    """Start `python -m tidegate ARGS...` from this source tree."""
    return Proc([sys.executable, "-m", "tidegate", *args], env=env, cwd=cwd)


def run_tidegate(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidegate", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )
