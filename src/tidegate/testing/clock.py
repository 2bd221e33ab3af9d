"""A fake clock for pure decisions that take the time: slow-start ramps, ejection periods,
retry budgets, rate windows. Pass it where a `clock: Callable[[], float]` is accepted (e.g.
`Pool(..., clock=FakeClock())`) and move time by hand; nothing ever sleeps.

    clock = FakeClock()
    pool = Pool("web", slow_start=10.0, clock=clock)
    ...
    clock.advance(5.0)
    pool.tick(clock())
"""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward (never back: it is a monotonic clock); returns the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a monotonic clock does not go back")
        self._now = float(when)
