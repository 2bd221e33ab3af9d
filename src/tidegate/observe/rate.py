"""A rate over a sliding window, from samples of a running total (time is passed in).

Why samples of a total rather than one timestamp per event: the hot path only bumps an int
(`Counters.completed`); whoever wants IOPS samples that int now and then. The rate is the change
of the total between the newest sample and the oldest one still covering the window, divided by
the time between them, so it is exact for the span it covers however irregular the sampling.
"""

from __future__ import annotations

from collections import deque


class SlidingRate:
    """Events per second over roughly the last `window` seconds.

    Samples closer together than `resolution` replace the newest one instead of piling up, so
    memory stays at about window / resolution samples whatever the sampling frequency.
    """

    __slots__ = ("_samples", "resolution", "window")

    def __init__(self, window: float = 10.0, resolution: float = 0.5) -> None:
        if window <= 0 or resolution <= 0:
            raise ValueError("window and resolution must be > 0")
        self.window = window
        self.resolution = resolution
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        samples = self._samples
        if samples and now < samples[-1][0]:
            return  # a clock that went backwards tells nothing
        if len(samples) >= 2 and samples[-1][0] - samples[-2][0] < self.resolution:
            samples[-1] = (now, total)
        else:
            samples.append((now, total))
        # Keep the newest sample at or before the window's start, so the rate spans the window.
        start = now - self.window
        while len(samples) > 2 and samples[1][0] <= start:
            samples.popleft()

    def rate(self) -> float:
        samples = self._samples
        if len(samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        if t1 <= t0:
            return 0.0
        return max(0, c1 - c0) / (t1 - t0)

    def span(self) -> float:
        """Seconds between the oldest and the newest sample the rate is computed over."""
        if len(self._samples) < 2:
            return 0.0
        return self._samples[-1][0] - self._samples[0][0]
