"""The interface every scheduler implements, and the table from config names to classes.

A scheduler is told the pool's eligible instances whenever that set, a weight or a ramp changes
(`update`), and answers `pick` many times in between. `pick` is on the hot path of every data
plane: do the work in `update`, keep `pick` O(1) or O(log n).

`key` is the hash key for the hashing schedulers (bytes of the client address, URI, header or
cookie; see `hash_key` in the config); the others ignore it. `avoid` holds instances already tried
for this request: a scheduler returns one outside it when one exists, else any eligible one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol, TypeVar

from tidegate.balancing.instance import Instance


class Scheduler(Protocol):
    def update(self, instances: Sequence[Instance]) -> None: ...

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None: ...


SchedulerFactory = Callable[[], Scheduler]
_REGISTRY: dict[str, SchedulerFactory] = {}
F = TypeVar("F", bound=SchedulerFactory)


def register(name: str) -> Callable[[F], F]:
    """Make a scheduler class (or a function returning one) known under a config name."""

    def deco(factory: F) -> F:
        _REGISTRY[name] = factory
        return factory

    return deco


def make_scheduler(name: str) -> Scheduler:
    from tidegate.balancing import schedulers  # noqa: F401  (fills the registry)

    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}") from None


def scheduler_names() -> list[str]:
    from tidegate.balancing import schedulers  # noqa: F401

    return sorted(_REGISTRY)
