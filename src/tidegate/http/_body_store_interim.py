"""Stand-in for `body_store.py` (helper `retry` owns it) with its API, memory only.

Deleted as soon as the real module lands on main.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class BodyTooLarge(Exception):
    pass


class SpoolError(Exception):
    pass


class BodyStore:
    def __init__(self, in_memory: int, max_bytes: int, tmpdir: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.finished = False
        self._chunks: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_bytes:
            raise BodyTooLarge(self.max_bytes)
        self._chunks.append(chunk)
        self.size += len(chunk)
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def reader(self) -> AsyncIterator[bytes]:
        i = 0
        while True:
            if i < len(self._chunks):
                out = b"".join(self._chunks[i:])
                i = len(self._chunks)
                yield out
            elif self.finished:
                return
            else:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                await fut

    def close(self) -> None:
        self._chunks = []
        self._wake()
