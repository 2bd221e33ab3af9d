"""The counting decision of active health checks: `rise` passes in a row to be healthy again,
`fall` failures in a row to be unhealthy (HAProxy's names; Envoy calls them healthy/unhealthy
thresholds).

Theory of operation: the counter holds a verdict and a streak of results contradicting it. A
result agreeing with the verdict resets the streak; the verdict flips when the streak reaches
rise (when unhealthy) or fall (when healthy). A new instance starts healthy, as in HAProxy: it
is in rotation from the start, and a dead one leaves it after `fall` checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RiseFall:
    rise: int
    fall: int
    healthy: bool = True
    streak: int = 0

    def __post_init__(self) -> None:
        if self.rise < 1 or self.fall < 1:
            raise ValueError("rise and fall must be >= 1")

    def observe(self, ok: bool) -> bool | None:
        """Count one check result; the new verdict when it flips, else None."""
        if ok == self.healthy:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak >= (self.rise if ok else self.fall):
            self.healthy = ok
            self.streak = 0
            return ok
        return None
