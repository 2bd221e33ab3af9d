"""The process log (not the access log): level and format chosen on the command line.

`tidegate --log-level info --log-format text|json run ...` sets them in the environment
(TIDEGATE_LOG_LEVEL, TIDEGATE_LOG_FORMAT, which also choose them when no option does) so the
worker processes a run starts, and the new process of a self-upgrade, log the same way.
Text lines read `2026-12-04 20:00:00,123 INFO tidegate: ready`; JSON lines are one object each
with `time` (RFC 3339, ms, UTC), `level`, `logger`, `msg` (and `exc` with a traceback).

HTTP client libraries log each request at INFO (httpx, httpcore: every etcd call of the
registry); they are held to WARNING whatever the level, or a registry-backed gateway would log
a line per lease renewal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LEVEL_ENV = "TIDEGATE_LOG_LEVEL"
FORMAT_ENV = "TIDEGATE_LOG_FORMAT"
_QUIET = ("httpx", "httpcore", "hpack", "asyncio")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rfc3339_ms(t: float) -> str:
    """`2026-12-04T20:00:00.123Z`: the time fields of both logs."""
    whole = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((t - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": rfc3339_ms(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Set up the root logger on stderr (from the environment where an argument is None)."""
    level = (level or os.environ.get(LEVEL_ENV) or "info").lower()
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if level not in LEVELS:
        level = "info"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def export(level: str | None, fmt: str | None) -> None:
    """Set this process up (an option given, else the environment's choice, else the default)
    and record the choice for the processes it starts: workers, and the new process of a
    self-upgrade (started with the command's own arguments only)."""
    level = level or os.environ.get(LEVEL_ENV) or "info"
    fmt = fmt or os.environ.get(FORMAT_ENV) or "text"
    os.environ[LEVEL_ENV] = level
    os.environ[FORMAT_ENV] = fmt
    configure(level, fmt)
