"""tidegate check CONFIG: validate; errors as `file:line: key.path: message`, exit 2."""

from __future__ import annotations

import argparse
import sys

from tidegate.config import ConfigError, load_config
from tidegate.control.runtime.process import FILE_CHECKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path to the TOML config file")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, FILE_CHECKS)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    layers = [name for name in ("http", "tcp", "dns", "lvs", "admin") if getattr(cfg, name)]
    print(f"{args.config}: ok ({len(cfg.pools)} pools; layers: {', '.join(layers) or 'none'})")
    return 0
