"""Waiting in tests for a condition the code under test offers no event for: poll it, bounded in
time, and say what was not reached. One helper for the whole suite (sync and asyncio)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(what: Callable[[], T], timeout: float = 15.0, step: float = 0.02, message: str = "") -> T:
    """Poll `what()` until it is truthy and return it; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = what()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message or 'condition'} not reached within {timeout}s (last: {last!r})")
        time.sleep(step)


async def until_async(
    what: Callable[[], T], timeout: float = 15.0, step: float = 0.01, message: str = ""
) -> T:
    """`until` for a test on an event loop: the loop runs between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = what()
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"{message or 'condition'} not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(step)
