from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tidegate.testing import leftovers
from tidegate.testing.instance_app import app_writer
from tidegate.testing.process import Proc, tidegate

# How long processes still stopping at the session's end get before they count as left behind.
_LEFTOVER_WAIT = 10.0
_token = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_token] = leftovers.mark_session()


def pytest_runtest_setup(item: pytest.Item) -> None:
    os.environ[leftovers.NODE] = item.nodeid  # inherited: names the test that started a process


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process the tests started (at any depth) is still alive."""
    token = session.config.stash.get(_token, None)
    if token is None:
        return
    left = leftovers.wait_gone(token, _LEFTOVER_WAIT)
    if not left:
        return
    leftovers.kill(left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", f"{len(left)} process(es) left behind by the tests (now killed)", red=True)
        for p in left:
            reporter.write_line(str(p))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def start_tidegate(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """start_tidegate(config_text) → a running `tidegate run` that printed `tidegate: ready`."""
    procs: list[Proc] = []

    def start(config_text: str, *extra: str, ready: bool = True, name: str = "tidegate.toml") -> Proc:
        path = tmp_path / name
        path.write_text(config_text)
        proc = tidegate("run", str(path), *extra)
        proc.config_path = path  # type: ignore[attr-defined]
        procs.append(proc)
        if ready:
            proc.wait_for(r"tidegate: ready")
        return proc

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def write_app(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """write_app(version="1", healthy=True) writes the instance app (testing/instance_app.py) and
    returns the env under which `tidegate serve` children import it."""
    return app_writer(tmp_path)
