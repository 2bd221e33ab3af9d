"""Slow start: a readmitted instance's weight ramps up linearly instead of jumping to full.

A process that just started has cold caches, unwarmed JIT, empty connection pools; sending it a
full share at once is how a restarted instance falls over again. Its weight is multiplied by a
factor that grows from `min_factor` to 1 over the pool's `slow_start` period (nginx Plus, HAProxy
`slowstart` and Envoy do the same). Pure: the caller passes the time.
"""

from __future__ import annotations

MIN_FACTOR = 0.1  # a readmitted instance starts with a tenth of its weight (Envoy's default)


def ramp_factor(now: float, since: float, period: float, min_factor: float = MIN_FACTOR) -> float:
    """The share of its weight an instance gets at `now`, having entered slow-start at `since`."""
    if period <= 0:
        return 1.0
    return min(1.0, max(min_factor, (now - since) / period))
