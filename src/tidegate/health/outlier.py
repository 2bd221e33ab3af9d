"""Passive outlier detection: eject an instance after consecutive failed attempts.

Theory of operation (after Envoy's outlier detection, with its names where they fit):
- Data planes report every attempt (`Pool.report`). A success resets the instance's count of
  consecutive failures; reaching `consecutive_failures` asks for an ejection.
- The n-th ejection of an instance lasts `ejection x n`, capped at `max_ejection`. The count n
  starts again from zero once the instance has gone `max_ejection` seconds since its last
  readmission without being ejected: an old incident does not lengthen a new one forever.
- At most `max_ejected_percent` of the pool's instances are ejected at once, and never the last
  instance that still takes work: a pool is not emptied by its own detector (that would turn a
  partial failure into a total one; the active checks, which see real death, may still do it).
- Only instances that take new work are counted and ejected; a draining, down or maint instance
  is someone else's business.

Pure: time is passed in, the caller applies the verdicts to the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tidegate.balancing.instance import Instance
from tidegate.config.model import OutlierConfig


@dataclass(slots=True)
class _Record:
    failures: int = 0  # consecutive
    ejections: int = 0  # how many in the current incident (the n of ejection x n)
    until: float | None = None  # ejected until then
    readmitted_at: float | None = None


@dataclass(frozen=True, slots=True)
class Ejection:
    instance: Instance
    duration: float
    nth: int
    failures: int

    @property
    def cause(self) -> str:
        return f"ejected: {self.failures} consecutive failures, {self.duration:g}s (ejection #{self.nth})"


class OutlierDetector:
    def __init__(self, cfg: OutlierConfig) -> None:
        self.cfg = cfg
        self._records: dict[Instance, _Record] = {}

    @property
    def enabled(self) -> bool:
        return self.cfg.consecutive_failures > 0

    def ejected(self) -> list[Instance]:
        return [i for i, r in self._records.items() if r.until is not None]

    def is_ejected(self, inst: Instance) -> bool:
        r = self._records.get(inst)
        return r is not None and r.until is not None

    def ejected_until(self, inst: Instance) -> float | None:
        r = self._records.get(inst)
        return r.until if r is not None else None

    def consecutive_failures(self, inst: Instance) -> int:
        r = self._records.get(inst)
        return r.failures if r is not None else 0

    def success(self, inst: Instance) -> None:
        """An attempt on `inst` succeeded (on the hot path: one dict lookup)."""
        r = self._records.get(inst)
        if r is not None:
            r.failures = 0

    def failure(self, inst: Instance, now: float, members: Sequence[Instance]) -> Ejection | None:
        """An attempt on `inst` failed; an Ejection when it is to be ejected now."""
        r = self._records.get(inst)
        if not self.enabled or not inst.state.takes_new_work:
            return None
        if r is None:
            r = self._records[inst] = _Record()
        if r.until is not None:
            return None
        r.failures += 1
        if r.failures < self.cfg.consecutive_failures or not self._may_eject(inst, members):
            return None
        if r.readmitted_at is not None and now - r.readmitted_at >= self.cfg.max_ejection:
            r.ejections = 0
        r.ejections += 1
        duration = min(self.cfg.ejection * r.ejections, self.cfg.max_ejection)
        r.until = now + duration
        failures, r.failures = r.failures, 0
        return Ejection(inst, duration, r.ejections, failures)

    def _may_eject(self, inst: Instance, members: Sequence[Instance]) -> bool:
        ejected = sum(1 for i in members if self.is_ejected(i))
        if (ejected + 1) * 100 > self.cfg.max_ejected_percent * len(members):
            return False
        return any(i is not inst and i.available for i in members)

    def expired(self, now: float) -> list[Instance]:
        """Instances whose ejection is over (they are no longer counted as ejected)."""
        out = []
        for inst, r in self._records.items():
            if r.until is not None and now >= r.until:
                r.until = None
                r.failures = 0
                r.readmitted_at = now
                out.append(inst)
        return out

    def pardon(self, inst: Instance, now: float) -> None:
        """End an ejection early (an operator enabled the instance); it counts as readmitted."""
        r = self._records.get(inst)
        if r is not None:
            r.failures = 0
            if r.until is not None:
                r.until = None
                r.readmitted_at = now

    def incident(self, inst: Instance) -> tuple[int, float | None]:
        """How many ejections the current incident has had, and when the one in force ends."""
        r = self._records.get(inst)
        return (r.ejections, r.until) if r is not None else (0, None)

    def resume(self, inst: Instance, ejections: int, until: float | None) -> None:
        """Take up an incident another process saw (a self-upgrade hands it over)."""
        r = self._records.setdefault(inst, _Record())
        r.ejections = ejections
        r.until = until

    def forget_missing(self, members: Sequence[Instance]) -> None:
        keep = set(members)
        for inst in [i for i in self._records if i not in keep]:
            del self._records[inst]


class PassiveHook:
    """A pool's `on_result` for passive detection. A success, once per proxied request, is the
    detector's alone (compiled: no interpreted frame on the hot path); a failure goes to
    `on_failure`, which judges it with the pool in view."""

    def __init__(self, detector: OutlierDetector, on_failure: Callable[[Instance], None]) -> None:
        self.detector = detector
        self.on_failure = on_failure

    def __call__(self, inst: Instance, ok: bool) -> None:
        if ok:
            self.detector.success(inst)
        else:
            self.on_failure(inst)
