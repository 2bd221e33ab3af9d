"""The optional access log: one JSON object per request, to a file or stdout ("-").

Off by default; when off the exchange does not build the entry at all.
"""

from __future__ import annotations

import sys
from typing import TextIO


class AccessLog:
    def __init__(self, target: str) -> None:
        self.target = target
        self._own = target != "-"
        self._out: TextIO = open(target, "a", encoding="utf-8") if self._own else sys.stdout  # noqa: SIM115

    def write(self, line: str) -> None:
        out = self._out
        out.write(line)
        out.write("\n")
        out.flush()

    def close(self) -> None:
        if self._own:
            self._out.close()
        else:
            self._out.flush()
