"""What the DNS layer counts: per record (queries, queries/s, answers per address, fail-open
responses) and per server (responses by rcode, truncations, malformed packets, internal errors).

Plain integers bumped on the hot path; the admin API and /metrics read them when asked.
`internal_errors` counts exceptions from tidegate's own code while answering a packet that parsed:
it should stay at zero, and the fuzz tests assert that it does.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable


class Rate:
    """Events per second over the last `window` whole seconds (one-second buckets)."""

    __slots__ = ("_buckets", "_clock", "_second", "window")

    def __init__(self, window: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._buckets = [0] * window
        self._second = int(clock())

    def _advance(self) -> int:
        return self._advance_to(int(self._clock()))

    def _advance_to(self, now: int) -> int:
        gap = now - self._second
        if gap > 0:
            for s in range(self._second + 1, self._second + 1 + min(gap, self.window)):
                self._buckets[s % self.window] = 0
            self._second = now
        return now

    def add(self, n: int = 1) -> None:
        self._buckets[self._advance() % self.window] += n

    def add_at(self, now: float, n: int = 1) -> None:
        """add(n) with the clock read already: the caller's reading of the same clock."""
        self._buckets[self._advance_to(int(now)) % self.window] += n

    def per_second(self) -> float:
        now = self._advance()
        # The current second is still filling: average over the completed ones.
        return (sum(self._buckets) - self._buckets[now % self.window]) / (self.window - 1)


class RecordFigures:
    __slots__ = ("answers", "fail_open", "last_answered", "queries", "rate")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.queries = 0
        self.fail_open = 0
        self.answers: Counter[str] = Counter()  # IP → times it was handed out
        self.last_answered: dict[str, float] = {}  # IP → monotonic time it was last handed out
        self.rate = Rate(clock=clock)


class Figures:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.records: dict[str, RecordFigures] = {}
        self.responses: Counter[str] = Counter()  # rcode name → count
        self.udp = 0
        self.tcp = 0
        self.truncated = 0
        self.formerr = 0  # packets that did not parse, answered FORMERR
        self.dropped = 0  # too short to answer, or responses (QR set): never answered
        self.internal_errors = 0
        self.cache_hits = 0  # plain queries answered from the packet cache
        self.cache_misses = 0  # plain queries rendered by dnspython (then cached)

    def record(self, name: str) -> RecordFigures:
        fig = self.records.get(name)
        if fig is None:
            fig = self.records[name] = RecordFigures(self.clock)
        return fig
