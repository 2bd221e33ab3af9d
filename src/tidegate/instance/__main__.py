"""`python -m tidegate.instance MODULE:APP --port P`: one drain-aware instance (what `tidegate serve`
starts N of). Exits 0 after a drain, 2 when the app cannot be imported, 3 when its startup fails."""

from __future__ import annotations

import argparse
import sys

from tidegate.instance.lifeline import die_with_parent
from tidegate.instance.runtime import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tidegate.instance", description=__doc__)
    p.add_argument("app", metavar="MODULE:APP", help="the ASGI app to run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds in-flight requests may take after SIGTERM"
    )
    p.add_argument("--drain-window", type=float, default=1.0, help="seconds the drain signal is answered")
    p.add_argument("--health-path", default="/healthz")
    p.add_argument("--app-health", action="store_true", help="the app answers the health path itself")
    p.add_argument("--keep-alive", type=float, default=75.0, help="idle keep-alive timeout, seconds")
    a = p.parse_args(argv)
    die_with_parent()
    return run(
        a.app,
        a.host,
        a.port,
        grace=a.grace,
        drain_window=a.drain_window,
        health_path=a.health_path,
        app_health=a.app_health,
        keep_alive=a.keep_alive,
    )


if __name__ == "__main__":
    sys.exit(main())
