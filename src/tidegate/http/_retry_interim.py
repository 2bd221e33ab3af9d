"""Stand-in for `retry.py` and `retry_budget.py` (helper `retry` owns those) with their API.

Deleted as soon as the real modules land on main; the proxy imports these names only through
`attempts.py`, so swapping is one import line. It follows architecture.md's retry table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tidegate.http.headers import IDEMPOTENT_METHODS


class Failure(StrEnum):
    CONNECT_FAILED = "connect-failed"
    CONNECT_TIMEOUT = "connect-timeout"
    DRAIN_SIGNAL = "drain-signal"
    REUSED_CLOSED = "reused-closed"
    LOST_AFTER_SEND = "lost-after-send"
    RESPONSE_TIMEOUT = "response-timeout"
    STATUS = "status"


_ANY_METHOD = frozenset(
    {Failure.CONNECT_FAILED, Failure.CONNECT_TIMEOUT, Failure.DRAIN_SIGNAL, Failure.REUSED_CLOSED}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    tries: int
    statuses: frozenset[int]
    route_idempotent: bool

    @classmethod
    def from_config(cls, retry_cfg: object, route_idempotent: bool) -> RetryPolicy:
        statuses: Iterable[int] = getattr(retry_cfg, "statuses", ())
        return cls(int(getattr(retry_cfg, "tries", 1)), frozenset(statuses), route_idempotent)


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    status: int | None  # when giving up: the gateway's answer; None = pass the upstream's through


def decide(
    policy: RetryPolicy,
    failure: Failure,
    method: bytes,
    attempt: int,
    status: int | None,
    response_started: bool,
    budget_ok: bool,
) -> Decision:
    give_up = Decision(False, None if failure is Failure.STATUS else _give_up_status(failure))
    if response_started or attempt >= policy.tries or not budget_ok:
        return give_up
    if failure in _ANY_METHOD:
        return Decision(True, None)
    if method in IDEMPOTENT_METHODS or policy.route_idempotent:
        return Decision(True, None)
    return give_up


def _give_up_status(failure: Failure) -> int:
    if failure in (Failure.CONNECT_TIMEOUT, Failure.RESPONSE_TIMEOUT):
        return 504
    return 502


class RetryBudget:
    """Unbounded stand-in: the real one caps retries at a ratio of recent requests."""

    def __init__(self, ratio: float, window_seconds: float = 10.0, min_per_second: float = 3.0) -> None:
        self.ratio = ratio

    def record_request(self, now: float) -> None:
        pass

    def try_spend(self, now: float) -> bool:
        return True
