"""tidegate run CONFIG: every layer the config names, in one process."""

from __future__ import annotations

import argparse
import sys

from tidegate.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path to the TOML config file")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight work may take to finish on SIGTERM (default 30)",
    )


def run(args: argparse.Namespace) -> int:
    from tidegate.control.runtime.process import run as run_runtime

    try:
        return run_runtime(args.config, args.grace)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
