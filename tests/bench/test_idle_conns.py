"""bench/idle_conns.py at a tiny scale, tidegate only, so the benchmark cannot rot: every client
served, every slowloris client closed by the header timeout, no normal request failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tidegate.testing.process import child_env

BENCH = Path(__file__).resolve().parents[2] / "bench" / "idle_conns.py"


@pytest.mark.timeout(120)
def test_idle_and_slowloris_bench_runs_and_reports() -> None:
    argv = [
        sys.executable,
        str(BENCH),
        "--idle=50",
        "--slowloris=10",
        "--normal=2",
        "--header-timeout=2",
        "--trickle=0.5",
        "--systems=tidegate",
        "--json",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=110, env=child_env())
    assert out.returncode == 0, out.stdout + out.stderr
    res = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("{")))
    assert (res["idle"], res["idle_open_at_end"]) == (50, 50), res
    assert res["slow_closed"] == 10, res
    assert res["slow_answers"] == {"HTTP/1.1 408 Request Timeout": 10}, res
    assert all(t >= 2.0 for t in res["slow_close_s"]), res  # closed at the timeout, not before
    assert res["normal_sent"] > 0 and res["normal_failed"] == 0, res
    assert res["kib_per_idle"] > 0
    assert "| tidegate | 50 |" in out.stdout
