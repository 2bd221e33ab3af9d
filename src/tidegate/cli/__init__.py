"""`tidegate` on the command line: one module per subcommand, each with add_arguments and run."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from tidegate.observe import process_log

# subcommand → (module, one-line help); a module has add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("tidegate.cli.run_cmd", "run every layer the config names"),
    "check": ("tidegate.cli.check_cmd", "validate a config file"),
    "demo": ("tidegate.cli.demo_cmd", "three demo instances behind a gateway, with the dashboard"),
    "serve": ("tidegate.cli.serve_cmd", "run an ASGI app as N drain-aware instances"),
    "upgrade": ("tidegate.cli.upgrade_cmd", "rolling upgrade of a pool"),
    "ctl": ("tidegate.cli.ctl_cmd", "the admin API from the shell"),
    "bench": ("tidegate.cli.bench_cmd", "side-by-side benchmark against nginx and HAProxy"),
    "lvs-realserver": ("tidegate.cli.realserver_cmd", "real-server side setup for LVS DR/TUN"),
}


# Packages a wheel leaves out (pyproject.toml): their commands exist in a source tree only.
_SOURCE_TREE_ONLY = ("tidegate.bench", "tidegate.testing")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name == COMMANDS[name][0] or (exc.name or "").startswith(_SOURCE_TREE_ONLY):
            return None  # not part of this build
        raise


class _Version(argparse.Action):
    """Like argparse's version action, but the hot path is only imported when asked."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        import tidegate

        print(f"tidegate {tidegate.__version__} (hot path: {tidegate.hot_path()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidegate", description=__doc__)
    parser.add_argument("--version", action=_Version, help="print the version and how the hot path runs")
    parser.add_argument(
        "--log-level",
        choices=process_log.LEVELS,
        help=f"the process log's level (default info, or ${process_log.LEVEL_ENV})",
    )
    parser.add_argument(
        "--log-format",
        choices=process_log.FORMATS,
        help=f"the process log: text lines, or one JSON object a line (default text, or ${process_log.FORMAT_ENV})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args._module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
