from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tidegate.testing.instance_app import app_writer
from tidegate.testing.process import Proc, tidegate


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
