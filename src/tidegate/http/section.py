"""Which [[http]] section a running listener follows after a reload."""

from __future__ import annotations

from tidegate.config.model import Config, HttpConfig


def section_after_reload(config: Config, listen: str, index: int) -> HttpConfig | None:
    """The section with the same listen address, else the one at the same position, else None
    (the section was removed: the listener keeps its old settings and says so)."""
    for h in config.http:
        if h.listen == listen:
            return h
    if index < len(config.http):
        return config.http[index]
    return None
