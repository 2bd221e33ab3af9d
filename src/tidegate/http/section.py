"""Which [[http]] section a running listener follows after a reload."""

from __future__ import annotations

import logging

from tidegate.config.model import Config, HttpConfig

log = logging.getLogger(__name__)


def section_after_reload(config: Config, current: HttpConfig, index: int, name: str) -> HttpConfig:
    """The section with the same listen address, else the one at the same position. A removed
    section keeps the old settings, and a new listen address keeps the bound one: both need a
    restart, and saying so beats silently half-applying them. The runtime keeps `index` at the
    section's position, which tells apart several sections on one address (port 0)."""
    if index < len(config.http) and config.http[index].listen == current.listen:
        return config.http[index]
    for h in config.http:
        if h.listen == current.listen:
            return h
    if index >= len(config.http):
        log.warning(
            "%s: no [[http]] section listens on %s any more; keeping the old one", name, current.listen
        )
        return current
    new = config.http[index]
    log.warning("%s: a new listen address needs a restart; keeping %s", name, current.listen)
    return new.model_copy(update={"listen": current.listen})
