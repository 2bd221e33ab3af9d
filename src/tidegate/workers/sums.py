"""Adding up counters that several worker processes report cumulatively (pure).

A worker reports what it counted since it started; the main process adds each report's increase
over the previous one from the same worker. A count smaller than before means the worker started
afresh (it was restarted): then all of the new value is the increase. So the sums only grow, as a
Prometheus counter must, across worker restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def increase(new: float, old: float | None) -> float:
    if old is None:
        return new
    d = new - old
    return d if d >= 0 else new


def increases(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """The increase of every count in a nested report (dicts of dicts of numbers)."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key) if old is not None else None
        if isinstance(value, Mapping):
            out[key] = increases(value, before if isinstance(before, Mapping) else None)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = increase(value, before if isinstance(before, int | float) else None)
    return out
