"""The retry budget through a real gateway: with every instance failing, attempts stay within
tries * requests and within the pool's budget (ratio * requests + the floor)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from tidegate.http.retry_budget import DEFAULT_MIN_PER_SECOND, DEFAULT_WINDOW_SECONDS
from tidegate.testing.faults import FaultInstance, Mode

REQUESTS = 300
TRIES = 3
RATIO = 0.2


def test_attempts_stay_within_tries_and_budget(
    gateway: Callable[..., Any], instances: Callable[..., FaultInstance]
) -> None:
    # CLOSE: every attempt reaches an instance (so it is counted there) and fails, and GET is
    # retried after it (lost after send, idempotent) — only the limits stop the retries.
    faults = [instances(Mode.CLOSE) for _ in range(3)]
    gw = gateway([f.address for f in faults], tries=TRIES, budget=RATIO)
    started = time.monotonic()
    statuses = [gw.request("GET", f"/b/{i}").status for i in range(REQUESTS)]
    elapsed = time.monotonic() - started
    attempts = sum(len(f.requests()) for f in faults)

    assert statuses == [502] * REQUESTS
    floor = DEFAULT_MIN_PER_SECOND * DEFAULT_WINDOW_SECONDS
    allowed_retries = math.floor(RATIO * REQUESTS + floor)
    assert attempts <= TRIES * REQUESTS
    assert attempts <= REQUESTS + allowed_retries
    if elapsed < DEFAULT_WINDOW_SECONDS - 1:
        # Every request is still in the window: the budget was spent, not left idle.
        assert attempts >= REQUESTS + allowed_retries - TRIES
    # Once the floor is spent, each request adds RATIO of a retry: over the last 50 requests
    # about 50 * RATIO retries in all, not the 50 * (TRIES - 1) that tries alone would allow.
    tail = [gw.log_entry(f"/b/{i}")["tries"] for i in range(REQUESTS - 50, REQUESTS)]
    assert sum(tail) <= 50 + math.ceil(RATIO * 50) + TRIES
    print(
        f"budget: {REQUESTS} requests, {attempts} attempts (bound {REQUESTS + allowed_retries}) in {elapsed:.2f}s"
    )
