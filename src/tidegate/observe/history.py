"""The last minutes of every instance's figures, one point a second, for the dashboard's charts.

Pure: whoever owns the pools calls `History.sample(t, {(pool, address): Counters})` once a second
(the admin service does, from the same counters /metrics reads) and `History.since(t)` when a
page asks. Each point is a rate over the time since the previous sample (requests/s, failures/s,
retries/s, bytes in/out per second), the connections in service at the sample, and p50/p99 of
the latencies recorded in between, estimated from the histogram buckets as Prometheus'
histogram_quantile() does. A pool's series are its instances' sums (its quantiles come from the
summed buckets).

Every series is a ring of the same fixed size aligned on one ring of sample times, so memory is
bounded whatever runs for how long, and an instance that leaves and comes back (a rolling
upgrade) keeps one series with a gap: `None` where it was not in its pool. A series whose points
are all `None` has aged out and is dropped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tidegate.observe.counters import LATENCY_BOUNDS, Counters

# The figures each point holds, in this order (the API names them).
METRICS: Final[tuple[str, ...]] = (
    "requests_per_s",
    "failures_per_s",
    "retries_per_s",
    "bytes_in_per_s",
    "bytes_out_per_s",
    "responses_4xx_per_s",  # HTTP responses of the instances by status class
    "responses_5xx_per_s",
    "connections",
    "p50_ms",
    "p99_ms",
)
_RATES: Final = METRICS.index("connections")  # the figures before it are rates of counts
DEFAULT_SIZE: Final = 300  # five minutes at one point a second

Point = tuple[float | None, ...]


class Ring:
    """The newest `size` values appended, oldest first."""

    __slots__ = ("_head", "_len", "_values", "size")

    def __init__(self, size: int, fill: int = 0) -> None:
        """`fill`: how many `None`s it starts with (a series born after the others)."""
        if size <= 0:
            raise ValueError("size must be > 0")
        self.size = size
        self._values: list[object] = [None] * size
        self._head = 0  # where the next value goes
        self._len = 0
        for _ in range(min(fill, size)):
            self.append(None)

    def append(self, value: object) -> None:
        self._values[self._head] = value
        self._head = (self._head + 1) % self.size
        self._len = min(self._len + 1, self.size)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[object]:
        start = (self._head - self._len) % self.size
        for k in range(self._len):
            yield self._values[(start + k) % self.size]

    def last(self, n: int) -> list[object]:
        """The newest `n` values (all of them when n >= len), oldest first."""
        n = max(0, min(n, self._len))
        start = (self._head - n) % self.size
        if start + n <= self.size:
            return self._values[start : start + n]
        return self._values[start:] + self._values[: start + n - self.size]


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = LATENCY_BOUNDS) -> float | None:
    """The q-quantile of observations counted per bucket (`counts[i]` in (bounds[i-1], bounds[i]],
    the last one above every bound), interpolated linearly inside its bucket as Prometheus'
    histogram_quantile() does; the highest finite bound when it falls in the open top bucket.
    None when nothing was observed."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n > 0 and below + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * max(0.0, rank - below) / n
        below += n
    return bounds[-1]


@dataclass(slots=True)
class _Seen:
    """An instance's counters at the previous sample."""

    completed: int
    failures: int
    retries: int
    bytes_in: int
    bytes_out: int
    latency: list[int]
    r4xx: int
    r5xx: int

    @staticmethod
    def of(c: Counters) -> _Seen:
        s = c.status_counts
        return _Seen(
            c.completed, c.failures, c.retries, c.bytes_in, c.bytes_out, list(c.latency_counts), s[3], s[4]
        )


def _grown(new: int, old: int) -> int:
    # Counters only grow; a smaller value is a new Counters object under the same address.
    return new - old if new >= old else new


class _Sums:
    __slots__ = ("buckets", "connections", "figures")

    def __init__(self) -> None:
        # requests, failures, retries, bytes in, bytes out, 4xx and 5xx responses (counts)
        self.figures = [0.0] * _RATES
        self.connections = 0.0
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)

    def add(self, other: _Sums) -> None:
        for k in range(_RATES):
            self.figures[k] += other.figures[k]
        self.connections += other.connections
        for k, n in enumerate(other.buckets):
            self.buckets[k] += n

    def point(self, dt: float) -> Point:
        rates = [round(v / dt, 3) if dt > 0 else 0.0 for v in self.figures]
        p50, p99 = quantile(0.5, self.buckets), quantile(0.99, self.buckets)
        return (
            *rates,
            self.connections,
            round(p50 * 1000, 3) if p50 is not None else None,
            round(p99 * 1000, 3) if p99 is not None else None,
        )


Key = tuple[str, str | None]  # (pool, instance address); None: the pool's sums


class History:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self.times = Ring(size)
        self._series: dict[Key, Ring] = {}
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._last: float | None = None

    def sample(self, now: float, counters: Mapping[tuple[str, str], Counters]) -> None:
        """One point for every (pool, address) in `counters` and every pool they belong to;
        `now` in seconds (the API reports it as is, so wall-clock time suits a browser)."""
        if self._last is not None and now <= self._last:
            return  # a clock that stood still or went back tells nothing
        dt = now - self._last if self._last is not None else 0.0
        self._last = now
        pools: dict[str, _Sums] = {}
        points: dict[Key, Point] = {}
        seen: dict[tuple[str, str], _Seen] = {}
        for key, c in counters.items():
            pool, _ = key
            old = self._seen.get(key)
            new = seen[key] = _Seen.of(c)
            sums = _Sums()
            sums.connections = c.active
            if old is not None:
                sums.figures = [
                    float(_grown(new.completed, old.completed)),
                    float(_grown(new.failures, old.failures)),
                    float(_grown(new.retries, old.retries)),
                    float(_grown(new.bytes_in, old.bytes_in)),
                    float(_grown(new.bytes_out, old.bytes_out)),
                    float(_grown(new.r4xx, old.r4xx)),
                    float(_grown(new.r5xx, old.r5xx)),
                ]
                sums.buckets = [_grown(n, o) for n, o in zip(new.latency, old.latency, strict=True)]
            pools.setdefault(pool, _Sums()).add(sums)
            points[key] = sums.point(dt) if old is not None else (None,) * _RATES + (c.active, None, None)
        for pool, sums in pools.items():
            points[(pool, None)] = (
                sums.point(dt) if dt > 0 else (None,) * _RATES + (sums.connections, None, None)
            )
        self._seen = seen
        filled = len(self.times)
        self.times.append(round(now, 3))
        for series, point in points.items():
            ring = self._series.get(series)
            if ring is None:
                ring = self._series[series] = Ring(self.size, fill=filled)
            ring.append(point)
        for series, ring in list(self._series.items()):
            if series not in points:
                ring.append(None)
                if all(p is None for p in ring):
                    del self._series[series]

    def since(self, after: float | None = None) -> dict[str, object]:
        """The points newer than `after` (all of them when None), as the API returns them:
        {"metrics": [...], "times": [...], "pools": {pool: {"pool": {metric:
        [...]}, "instances": {address: {metric: [...]}}}}}; a series' lists align with times."""
        times = [t for t in self.times if isinstance(t, float)]
        # Times only grow (sample() ignores a clock that goes back).
        n = len(times) if after is None else len(times) - bisect_right(times, after)
        pools: dict[str, dict[str, object]] = {}
        instances: dict[str, dict[str, object]] = {}
        for (pool, address), ring in self._series.items():
            entry = pools.setdefault(pool, {"pool": {}, "instances": instances.setdefault(pool, {})})
            columns = _columns(ring.last(n))
            if address is None:
                entry["pool"] = columns
            else:
                instances[pool][address] = columns
        return {"metrics": list(METRICS), "times": times[len(times) - n :], "pools": pools}


_GAP: Final[Point] = (None,) * len(METRICS)


def _columns(points: list[object]) -> dict[str, list[float | None]]:
    if not points:
        return {m: [] for m in METRICS}
    rows = [p if isinstance(p, tuple) else _GAP for p in points]
    return {m: list(column) for m, column in zip(METRICS, zip(*rows, strict=True), strict=True)}
