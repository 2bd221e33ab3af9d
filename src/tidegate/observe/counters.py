"""The three figures the seed names for every instance, counted the same way by every data plane.

- connections: requests (or connections, for L4) in service right now;
- IOPS: completed requests per second, a rate over a sliding window (see `rate.py`);
- traffic: bytes in (client → instance) and bytes out (instance → client).

And, for HTTP, the responses an instance gave by status class (`status_counts`).

Plain integers bumped on the hot path; rates and exposition are derived when someone looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# Upper bounds (seconds) of the response-latency buckets, Prometheus' defaults plus 30 s and 60 s.
LATENCY_BOUNDS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)


@dataclass(slots=True)
class Counters:
    active: int = 0  # in service now: requests for HTTP, connections for TCP/LVS
    completed: int = 0  # finished requests (or connections), whatever the outcome
    bytes_in: int = 0
    bytes_out: int = 0
    failures: int = 0  # attempts that failed on this instance (connect, reset, timeout, 5xx retried)
    retries: int = 0  # attempts on this instance that were retries of a failed attempt elsewhere
    # Non-cumulative counts per bucket of LATENCY_BOUNDS, the last one for +Inf.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_sum: float = 0.0
    # Responses the instance gave to the client by status class: 1xx, 2xx, 3xx, 4xx, 5xx (HTTP).
    status_counts: list[int] = field(default_factory=lambda: [0] * 5)

    def count_status(self, status: int) -> None:
        k = status // 100 - 1
        if 0 <= k < 5:
            self.status_counts[k] += 1

    def record_latency(self, seconds: float) -> None:
        # The first bucket whose bound is not below `seconds` (bisect_left), by a scan from the
        # fast end: most answers fall in the first buckets, and compiled this is a few compares.
        i = 0
        for bound in LATENCY_BOUNDS:
            if seconds <= bound:
                break
            i += 1
        self.latency_counts[i] += 1
        self.latency_sum += seconds
