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
        help="seconds in-flight work may take to finish on SIGTERM or after a self-upgrade (default 30)",
    )
    p.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the process id here; a self-upgrade (SIGUSR2) rewrites it with the new process's",
    )
    # The new process of a self-upgrade: the old one hands its sockets over this descriptor.
    p.add_argument("--handover-fd", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from tidegate.control.runtime.process import run as run_runtime
    from tidegate.observe import process_log

    # The process log, for this process and (through the environment) its workers.
    process_log.export(args.log_level, args.log_format)

    try:
        # How to start this process again (SIGUSR2): the same config and options.
        again = ["run", args.config, "--grace", repr(args.grace)]
        if args.pid_file:
            again += ["--pid-file", args.pid_file]
        return run_runtime(
            args.config, args.grace, argv=again, pid_file=args.pid_file, handover_fd=args.handover_fd
        )
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
