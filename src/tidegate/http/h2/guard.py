"""Budgets for what an HTTP/2 client may make the gateway do without asking for a response.

Each is a leaky bucket: `capacity` events at once, refilled at `rate` per second. A client that
overdraws one gets GOAWAY (ENHANCE_YOUR_CALM) and the connection closes; every other connection
goes on. What is counted, and why:

- resets: streams the client opens and cancels with RST_STREAM before their answer ended. Each
  such stream cost an exchange, perhaps an upstream request and a discarded upstream connection;
  the client paid one frame (rapid reset, CVE-2023-44487).
- control: SETTINGS, PING and PRIORITY frames and frames of unknown types. SETTINGS and PING each
  make the gateway queue an ACK, which piles up if the client does not read (CVE-2019-9512,
  -9515).
- empty: DATA frames that carry no byte and do not end the stream (CVE-2019-9518).

Pure: the caller passes the clock.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class Budget:
    """A leaky bucket."""

    __slots__ = ("at", "capacity", "level", "rate")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = 0.0
        self.at: float | None = None

    def spend(self, now: float, cost: float = 1.0) -> bool:
        """Count one event; False once the bucket overflows."""
        if self.at is not None and now > self.at:
            self.level = max(0.0, self.level - (now - self.at) * self.rate)
        self.at = now if self.at is None else max(self.at, now)
        self.level += cost
        return self.level <= self.capacity


class Abuse(Enum):
    RESETS = "rapid reset"
    CONTROL = "control frame flood"
    EMPTY = "empty frame flood"


# A page load cancels at most a screenful of streams at once; browsers send a few SETTINGS and
# an occasional PING. These leave ordinary clients far below the limits.
RESETS: Final = (100.0, 20.0)
CONTROL: Final = (100.0, 20.0)
EMPTY: Final = (100.0, 20.0)


class Guard:
    __slots__ = ("budgets",)

    def __init__(self) -> None:
        self.budgets = {
            Abuse.RESETS: Budget(*RESETS),
            Abuse.CONTROL: Budget(*CONTROL),
            Abuse.EMPTY: Budget(*EMPTY),
        }

    def spend(self, what: Abuse, now: float) -> bool:
        return self.budgets[what].spend(now)
