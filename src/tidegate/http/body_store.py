"""A request body kept for retries: in memory up to a threshold, then in a temporary file.

Theory of operation. The gateway `append`s the body's chunks as they arrive from the client and
calls `finish()` after the last one. Every attempt upstream reads the body through its own
`reader()`, from offset 0; a reader that catches up with the upload waits for more data, so the
first attempt streams while the upload is still arriving (nothing waits for the whole body), and a
retry replays what is stored and then follows the upload too.

Memory stays bounded whatever the body's size: up to `in_memory` bytes stay in a bytearray; the
chunk that would pass it moves the whole body to a temporary file (the memory part is written
there and freed), and from then on chunks go straight to the file and readers `pread` it in
`chunk_size` pieces. The file is anonymous from the start (`tempfile.TemporaryFile`: O_TMPFILE,
or created and unlinked at once), so no name is left on disk even when the process is killed;
`close()` releases its space whatever happened. Disk writes are synchronous, as nginx's are: on a
local disk they land in the page cache.

Failures are exceptions with a client answer each (the gateway maps them):
    BodyError
     ├── BodyTooLarge  — more than `max_bytes` → 413; nothing of the chunk is stored
     ├── SpoolError    — the temporary file cannot be created or written (unwritable or missing
     │                   directory, disk full) → 507; the file is already released
     └── BodyAborted   — `abort()` (client gone) or `close()` (request over) came first
Once one happened, every reader (waiting or not) and every later `append` raises it, so an
attempt still streaming upstream stops at once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import BinaryIO, NoReturn

CHUNK_SIZE = 64 * 1024


class BodyError(Exception):
    """The stored body cannot be used (see the subclasses)."""


class BodyTooLarge(BodyError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class SpoolError(BodyError):
    """The body could not be spooled to a temporary file; `__cause__` is the OSError."""


class BodyAborted(BodyError):
    """The body was abandoned before it was complete."""


class BodyStore:
    def __init__(
        self,
        in_memory: int,
        max_bytes: int,
        tmpdir: str | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if in_memory < 0 or max_bytes < 0 or chunk_size < 1:
            raise ValueError("in_memory and max_bytes must be >= 0, chunk_size >= 1")
        self.in_memory = in_memory
        self.max_bytes = max_bytes
        self.tmpdir = tmpdir
        self.chunk_size = chunk_size
        self.size = 0
        self.finished = False
        self._mem = bytearray()
        self._file: BinaryIO | None = None
        self._error: BodyError | None = None
        self._waiters: list[asyncio.Future[None]] = []

    # --- the writing side (the client connection) ------------------------------------------
    @property
    def spooled(self) -> bool:
        """True once the body lives in the temporary file."""
        return self._file is not None

    @property
    def memory_bytes(self) -> int:
        """Bytes of the body held in memory right now (0 once spooled)."""
        return len(self._mem)

    def append(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if self.finished:
            raise BodyAborted("append after finish()")
        if not chunk:
            return
        if self.size + len(chunk) > self.max_bytes:
            self._fail(BodyTooLarge(self.max_bytes))
        if self._file is None and self.size + len(chunk) > self.in_memory:
            self._spool()
        if self._file is None:
            self._mem += chunk
        else:
            self._write(chunk)
        self.size += len(chunk)
        self._wake()

    def finish(self) -> None:
        """The body is complete: readers end once they have read `size` bytes."""
        if self._error is not None:
            raise self._error
        self.finished = True
        self._wake()

    def abort(self, error: BodyError | None = None) -> None:
        """Abandon the body (client gone): readers and appends raise `error` from now on."""
        if self._error is None:
            self._error = error if error is not None else BodyAborted("request body abandoned")
        self._release()
        self._wake()

    def close(self) -> None:
        """Release memory and the temporary file, whatever happened. Safe to call twice."""
        if self._error is None:
            self._error = BodyAborted("body store closed")
        self._release()
        self._wake()

    def __enter__(self) -> BodyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the reading side (each attempt upstream) ------------------------------------------
    def reader(self) -> BodyReader:
        """A new async iterator over the body from offset 0 (one per attempt)."""
        return BodyReader(self)

    def _read(self, offset: int) -> bytes:
        if self._file is None:
            data = bytes(self._mem[offset : offset + self.chunk_size])
            if not data:
                self._fail(BodyAborted("the in-memory body is shorter than written"))
            return data
        try:
            data = os.pread(self._file.fileno(), min(self.chunk_size, self.size - offset), offset)
        except OSError as exc:
            self._fail(SpoolError(f"reading the spooled body failed: {exc}"), exc)
        if not data:
            self._fail(SpoolError("the spooled body is shorter than written"))
        return data

    async def _wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            # Cancelled readers must not linger in the list.
            if fut in self._waiters:
                self._waiters.remove(fut)

    # --- internals -------------------------------------------------------------------------
    def _spool(self) -> None:
        try:
            # Kept open for the life of the body; close() releases it.
            self._file = tempfile.TemporaryFile(prefix="tidegate-body-", dir=self.tmpdir, buffering=0)  # noqa: SIM115
        except OSError as exc:
            self._fail(SpoolError(f"cannot create a temporary file in {self.tmpdir or 'TMPDIR'}: {exc}"), exc)
        if self._mem:
            self._write(self._mem)
        self._mem = bytearray()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._file is not None
        fd = self._file.fileno()
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as exc:
            self._fail(SpoolError(f"cannot write the request body to disk: {exc}"), exc)

    def _fail(self, error: BodyError, cause: BaseException | None = None) -> NoReturn:
        error.__cause__ = cause
        self._error = error
        self._release()
        self._wake()
        raise error

    def _release(self) -> None:
        self._mem = bytearray()
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class BodyReader:
    """One pass over a `BodyStore` from offset 0, waiting for data the upload has not sent yet."""

    def __init__(self, store: BodyStore) -> None:
        self._store = store
        self.offset = 0

    def __aiter__(self) -> BodyReader:
        return self

    async def __anext__(self) -> bytes:
        store = self._store
        while True:
            if store._error is not None:
                raise store._error
            if self.offset < store.size:
                data = store._read(self.offset)
                self.offset += len(data)
                return data
            if store.finished:
                raise StopAsyncIteration
            await store._wait()
