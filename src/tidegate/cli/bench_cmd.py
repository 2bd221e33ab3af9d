"""tidegate bench: the HTTP gateway beside nginx and HAProxy on this machine (see bench/)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from tidegate.bench import http_compare
from tidegate.bench.kit import missing_tools

# In a source checkout: installs the Debian packages the benchmark needs when they are missing.
_BOOTSTRAP = Path(__file__).resolve().parents[3] / "bench" / "bootstrap"


def add_arguments(p: argparse.ArgumentParser) -> None:
    http_compare.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if missing_tools(http_compare.TOOLS) and _BOOTSTRAP.exists():
        subprocess.run([str(_BOOTSTRAP)], check=False)
    return http_compare.run(args)
