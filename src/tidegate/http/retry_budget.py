"""A pool-wide retry budget: retries may add at most a ratio of the recent request rate (pure).

Why a budget and not only a per-request try limit: with `tries = 3` and every instance failing,
a try limit alone triples the load on a fleet that is already down (a retry storm). A budget
bounds the *sum* of retries instead, as Finagle's `RetryBudget` and Envoy's `retry_budget` do.

The rule, over a sliding window of `window_seconds` (Finagle's defaults: 10 s, 20 %, 10/s):

    retries in the window  <=  ratio * requests in the window  +  min_per_second * window_seconds

The floor lets a quiet pool still retry (at 1 request/s a 20 % budget alone would allow one retry
every five seconds). Like Finagle's token bucket, the floor is a reserve: up to
`min_per_second * window_seconds` retries can be spent at once, then the ratio governs.

The window is a ring of `slots` counters (default 10 slots of 1 s each): memory is constant
whatever the request rate, and a count leaves the window within one slot's length of its age
reaching `window_seconds`. Time is injected (`now`, seconds from any monotonic clock) so tests
drive it with a simulated clock. One budget per pool, shared by every request to that pool.
"""

from __future__ import annotations

import math

DEFAULT_WINDOW_SECONDS = 10.0
DEFAULT_MIN_PER_SECOND = 10.0
DEFAULT_SLOTS = 10


class RetryBudget:
    def __init__(
        self,
        ratio: float,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        if ratio < 0 or min_per_second < 0:
            raise ValueError("ratio and min_per_second must be >= 0")
        if window_seconds <= 0 or slots < 1:
            raise ValueError("window_seconds must be > 0 and slots >= 1")
        self.ratio = ratio
        self.window_seconds = window_seconds
        self.min_per_second = min_per_second
        self.reserve = min_per_second * window_seconds
        self._slot_len = window_seconds / slots
        self._requests = [0] * slots
        self._retries = [0] * slots
        self._slot: int | None = None  # absolute index (now // slot_len) of the newest slot
        self.requests = 0  # in the window
        self.retries = 0  # in the window

    # --- what the gateway calls -----------------------------------------------------------
    def record_request(self, now: float) -> None:
        """Once per client request (not per attempt): the base the ratio applies to."""
        i = self._advance(now)
        self._requests[i] += 1
        self.requests += 1

    def can_spend(self, now: float) -> bool:
        """Would one more retry stay within the budget? Spends nothing."""
        self._advance(now)
        return self.retries + 1 <= self.ratio * self.requests + self.reserve

    def spend(self, now: float) -> None:
        """Count one retry (after `can_spend` said yes and the retry is made)."""
        i = self._advance(now)
        self._retries[i] += 1
        self.retries += 1

    def try_spend(self, now: float) -> bool:
        """`can_spend` and, when it says yes, `spend`: one retry token or False."""
        if not self.can_spend(now):
            return False
        self.spend(now)
        return True

    def allowed(self, now: float) -> int:
        """How many retries the window allows in all right now (spent ones included)."""
        self._advance(now)
        return math.floor(self.ratio * self.requests + self.reserve)

    # --- the sliding window ---------------------------------------------------------------
    def _advance(self, now: float) -> int:
        """Move the ring to `now`, clearing slots that left the window; the index of now's slot."""
        n = len(self._requests)
        slot = int(now // self._slot_len)  # (math.floor: a module lookup and a call per request)
        if self._slot is None:
            self._slot = slot
        elif slot > self._slot:
            # Clear every slot between the newest one and now (at most all of them).
            for s in range(self._slot + 1, min(slot, self._slot + n) + 1):
                i = s % n
                self.requests -= self._requests[i]
                self.retries -= self._retries[i]
                self._requests[i] = 0
                self._retries[i] = 0
            self._slot = slot
        # A clock that goes backwards (it should not) counts in the newest slot.
        return self._slot % n
