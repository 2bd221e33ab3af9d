"""Where in a TOML text a key path was written, so errors can say file:line.

tomllib gives values, not positions. This scanner walks the text once and records the line of
every table header, key, and element of a (possibly multi-line) array, under the same path
pydantic reports: ("pools", 1, "health", "interval") or ("pools", 0, "instances", 2, "weight").
It understands what config files use (tables, arrays of tables, dotted keys, inline tables and
arrays, strings); for anything stranger it falls back to the nearest enclosing path it saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r'^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*='
)
_BARE_KEY = re.compile(r'\s*([A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')\s*=')


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r'[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'', text)
    return [p[1:-1] if p[0] in "\"'" else p for p in parts]


class _Scanner:
    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.array_counts: dict[Path, int] = {}

    def note(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    def scan(self, text: str) -> dict[Path, int]:
        table: Path = ()
        # A value may span lines: (path of the container, element index, line) stacks.
        pending: list[tuple[Path, str]] = []  # open containers: (path, "[" or "{")
        counts: list[int] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = _strip_comment(raw)
            if not pending:
                m = _HEADER.match(line)
                if m:
                    names = _split_dotted(m.group(2))
                    if m.group(1) == "[[":
                        base = tuple(self._resolve(names))
                        idx = self.array_counts.get(base, 0)
                        self.array_counts[base] = idx + 1
                        table = (*base, idx)
                    else:
                        table = tuple(self._resolve(names))
                    self.note(table, lineno)
                    continue
                m = _KEY.match(line)
                if not m:
                    continue
                path = (*table, *_split_dotted(m.group(1)))
                self.note(path, lineno)
                rest = line[m.end() :]
                self._walk_value(rest, path, pending, counts, lineno)
            else:
                self._walk_value(line, pending[-1][0], pending, counts, lineno, continuing=True)
        return self.lines

    def _resolve(self, names: Sequence[str]) -> list[str | int]:
        # [pools.health] after [[pools]] means the last pools element.
        out: list[str | int] = []
        for k, name in enumerate(names):
            out.append(name)
            last = self.array_counts.get(tuple(out))
            if last is not None and k < len(names) - 1:
                out.append(last - 1)
        return out

    def _walk_value(
        self,
        text: str,
        path: Path,
        pending: list[tuple[Path, str]],
        counts: list[int],
        lineno: int,
        continuing: bool = False,
    ) -> None:
        i = 0
        n = len(text)
        expecting_element = continuing and bool(pending) and pending[-1][1] == "["
        while i < n:
            ch = text[i]
            if ch in "\"'":
                j = text.find(ch, i + 1)
                i = n if j < 0 else j + 1
                expecting_element = False
                continue
            if ch.isspace():
                i += 1
                continue
            if pending and pending[-1][1] == "[" and expecting_element and ch not in ",]":
                elem = (*pending[-1][0], counts[-1])
                self.note(elem, lineno)
                counts[-1] += 1
                expecting_element = False
                if ch == "{":
                    pending.append((elem, "{"))
                    counts.append(0)
                    i += 1
                    continue
                if ch == "[":
                    pending.append((elem, "["))
                    counts.append(0)
                    expecting_element = True
                    i += 1
                    continue
            if ch == "[":
                pending.append((path, "["))
                counts.append(0)
                expecting_element = True
                i += 1
                continue
            if ch == "{":
                pending.append((path, "{"))
                counts.append(0)
                i += 1
                continue
            if ch in "]}":
                if pending:
                    pending.pop()
                    counts.pop()
                i += 1
                continue
            if ch == ",":
                expecting_element = bool(pending) and pending[-1][1] == "["
                i += 1
                continue
            if pending and pending[-1][1] == "{":
                m = _BARE_KEY.match(text, i)
                if m:
                    key = m.group(1)
                    key = key[1:-1] if key[0] in "\"'" else key
                    self.note((*pending[-1][0], key), lineno)
                    i = m.end()
                    continue
            i += 1


def _strip_comment(line: str) -> str:
    out = []
    quote = ""
    for ch in line:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def line_of(text: str, path: Path) -> int | None:
    """The line where `path` (or the nearest enclosing key that was written) appears."""
    lines = _Scanner().scan(text)
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None
