"""Sizes and durations as users write them in the config file: "64KiB", "1.5s", "250ms"."""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes from an int or a string with B, KiB, MiB, GiB (binary units only, as nginx users expect)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as 64KiB")
    m = _NUMBER_UNIT.match(value)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(f"bad size {value!r}: use a number with B, KiB, MiB or GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string with ms, s, m, h."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 2s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 2s")
    m = _NUMBER_UNIT.match(value)
    if m is None or m.group(2) not in _DURATION_UNITS:
        raise ValueError(f"bad duration {value!r}: use a number with ms, s, m or h")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
