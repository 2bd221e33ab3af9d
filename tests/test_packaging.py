"""The package an operator installs: what the wheel and sdist carry, and the pure-Python fallback.

The compiled wheel itself (mypyc run by the build backend, `tidegate --version` saying
"compiled" in a new venv) is checked by scripts/check_wheel: a compiled build takes 1-3 minutes
of this machine's time, too long for the suite. These tests build the fallbacks, which take
seconds: a wheel with TIDEGATE_COMPILE=0 and one where the C compiler fails (CC=false).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files a clone has (tracked, or new and not ignored): no build leftovers."""
    dest = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            (dest / os.fsdecode(name)).write_bytes(src.read_bytes())
    return dest


def _wheel(tree: Path, out: Path, **env: str) -> tuple[Path, str]:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out), "."],
        cwd=tree, env={**os.environ, **env}, capture_output=True, text=True, timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel, run.stdout + run.stderr


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_a_pure_wheel_on_request_runs_and_says_so(tree: Path, tmp_path: Path) -> None:
    wheel, log = _wheel(tree, tmp_path / "dist", TIDEGATE_COMPILE="0")
    assert wheel.name == "tidegate-0.1.0-py3-none-any.whl"
    assert "building pure Python: TIDEGATE_COMPILE=0" in log
    names = _names(wheel)
    assert not [n for n in names if n.endswith(".so")]
    assert "tidegate/_native.json" not in names
    assert "tidegate/py.typed" in names
    assert "tidegate/http/exchange.py" in names
    assert "tidegate/control/admin/static/uPlot.iife.min.js" in names
    assert "tidegate-0.1.0.dist-info/licenses/LICENSE" in names
    # The test and benchmark kits are for a source tree, not for running tidegate.
    assert not [n for n in names if n.startswith(("tidegate/testing/", "tidegate/bench/"))]
    with zipfile.ZipFile(wheel) as z:
        meta = z.read("tidegate-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in meta
    assert "Requires-Python: >=3.11" in meta

    # Installed (dependencies from this environment), it runs and tells how its hot path runs.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("TIDEGATE_PURE", None)
    version = subprocess.run(
        [sys.executable, "-m", "tidegate", "--version"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    assert version.stdout.strip() == "tidegate 0.1.0 (hot path: pure Python (not compiled))"
    helptext = subprocess.run(
        [sys.executable, "-m", "tidegate", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert "serve" in helptext
    assert "bench" not in helptext  # its module is in the source tree only


def test_without_a_working_c_compiler_the_wheel_is_pure_python(tree: Path, tmp_path: Path) -> None:
    wheel, log = _wheel(tree, tmp_path / "dist", CC="false", TIDEGATE_COMPILE="1")
    assert wheel.name == "tidegate-0.1.0-py3-none-any.whl"
    assert "building pure Python: no working C compiler" in log
    assert not [n for n in _names(wheel) if n.endswith(".so")]


def test_the_sdist_is_the_whole_source_tree(tree: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path)],
        cwd=tree, capture_output=True, check=True, timeout=300,
        env={**os.environ, "TIDEGATE_COMPILE": "0"},
    )
    (sdist,) = tmp_path.glob("tidegate-0.1.0.tar.gz")
    import tarfile

    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in (
        "setup.py", "pyproject.toml", "LICENSE", "README.md", "scripts/build_native.py",
        "src/tidegate/py.typed", "src/tidegate/testing/process.py", "src/tidegate/bench/gateway_cpu.py",
        "tests/test_packaging.py", "docs/operations.md",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.endswith(".so") or n.endswith("_native.json")]
