"""The request body store: round trips at the boundaries, streaming, replays, spool failures, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.http.body_store import BodyAborted, BodyStore, BodyTooLarge, SpoolError


def open_files_under(directory: Path) -> list[str]:
    """Targets of this process's open file descriptors inside `directory` (deleted ones too)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory) + "/"):
                found.append(target)
    return found


async def read_all(store: BodyStore) -> bytes:
    return b"".join([chunk async for chunk in store.reader()])


def fill(store: BodyStore, chunks: list[bytes]) -> None:
    for c in chunks:
        store.append(c)
    store.finish()


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 1000])
@pytest.mark.parametrize("piece", [1, 7, 100, 4096])
async def test_round_trip_at_the_memory_boundary(tmp_path: Path, size: int, piece: int) -> None:
    body = os.urandom(size)
    with BodyStore(in_memory=100, max_bytes=1000, tmpdir=str(tmp_path), chunk_size=64) as store:
        fill(store, [body[i : i + piece] for i in range(0, size, piece)])
        assert store.size == size
        assert store.spooled == (size > 100)
        assert store.memory_bytes == (0 if size > 100 else size)
        for _ in range(3):  # every retry replays from offset 0
            chunks = [c async for c in store.reader()]
            assert b"".join(chunks) == body
            assert all(0 < len(c) <= 64 for c in chunks)
        assert os.listdir(tmp_path) == []  # the spool file never has a name


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=0, max_size=300), max_size=20),
    in_memory=st.integers(0, 2000),
    chunk_size=st.integers(1, 500),
)
def test_round_trip_property(chunks: list[bytes], in_memory: int, chunk_size: int) -> None:
    body = b"".join(chunks)

    async def main() -> None:
        store = BodyStore(in_memory=in_memory, max_bytes=10_000, chunk_size=chunk_size)
        # One reader follows the upload from before the first byte; the others come after.
        follower = asyncio.ensure_future(read_all(store))
        for c in chunks:
            store.append(c)
            await asyncio.sleep(0)  # let the follower run between chunks
        store.finish()
        assert await follower == body
        assert await read_all(store) == body
        assert await asyncio.gather(read_all(store), read_all(store)) == [body, body]
        assert store.spooled == (len(body) > in_memory)
        store.close()

    asyncio.run(main())


async def test_first_attempt_streams_before_the_upload_ends() -> None:
    store = BodyStore(in_memory=10, max_bytes=100)
    reader = store.reader()
    first = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0)
    assert not first.done()  # waits for data
    store.append(b"hello")
    assert await asyncio.wait_for(first, 1) == b"hello"
    store.append(b" spooled world")  # passes in_memory: moves to the file mid-read
    assert store.spooled
    assert await reader.__anext__() == b" spooled world"
    nxt = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0)
    assert not nxt.done()
    store.finish()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(nxt, 1)
    store.close()


async def test_too_large_at_exactly_max_plus_one(tmp_path: Path) -> None:
    ok = BodyStore(in_memory=4, max_bytes=10, tmpdir=str(tmp_path))
    fill(ok, [b"12345", b"67890"])
    assert await read_all(ok) == b"1234567890"
    ok.close()

    store = BodyStore(in_memory=4, max_bytes=10, tmpdir=str(tmp_path))
    waiting = asyncio.ensure_future(read_all(store))
    store.append(b"12345")
    assert open_files_under(tmp_path)  # spooled
    with pytest.raises(BodyTooLarge):
        store.append(b"678901")
    assert store.size == 5
    with pytest.raises(BodyTooLarge):  # the attempt streaming upstream stops at once
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(BodyTooLarge):
        store.append(b"x")
    assert open_files_under(tmp_path) == []  # released at once, before close()
    store.close()


@pytest.mark.parametrize("kind", ["missing", "a-file", "read-only"])
async def test_unwritable_spool_dir_is_a_spool_error_not_a_crash(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "spool"
    if kind == "a-file":
        target.write_text("not a directory")
    elif kind == "read-only":
        target = Path("/proc")  # unwritable even for root, unlike a chmod 0500 directory
    store = BodyStore(in_memory=8, max_bytes=100, tmpdir=str(target))
    waiting = asyncio.ensure_future(read_all(store))
    store.append(b"12345678")  # fits in memory
    with pytest.raises(SpoolError) as err:
        store.append(b"9")
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(SpoolError):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(SpoolError):
        await read_all(store)
    assert store.memory_bytes == 0
    store.close()
    assert os.listdir(tmp_path) == (["spool"] if kind == "a-file" else [])
    assert open_files_under(target) == []


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A full disk, as far as this process's writes go: writes past `limit` fail with EFBIG."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


async def test_disk_full_while_spooling(tmp_path: Path) -> None:
    store = BodyStore(in_memory=100, max_bytes=1 << 20, tmpdir=str(tmp_path))
    with file_size_limit(4096):
        store.append(b"a" * 100)
        store.append(b"b" * 1000)  # spools
        assert store.spooled and len(open_files_under(tmp_path)) == 1
        with pytest.raises(SpoolError) as err:
            for _ in range(10):
                store.append(b"c" * 1000)
    assert isinstance(err.value.__cause__, OSError)
    assert open_files_under(tmp_path) == [] and os.listdir(tmp_path) == []
    with pytest.raises(SpoolError):
        await read_all(store)
    store.close()


async def test_close_releases_the_temp_file_whatever_happened(tmp_path: Path) -> None:
    # Finished and read.
    store = BodyStore(in_memory=10, max_bytes=1000, tmpdir=str(tmp_path))
    fill(store, [b"x" * 500])
    [target] = open_files_under(tmp_path)
    assert target.endswith("(deleted)") and os.listdir(tmp_path) == []
    assert await read_all(store) == b"x" * 500
    store.close()
    store.close()
    assert open_files_under(tmp_path) == []

    # Closed mid-upload, with a reader waiting and one mid-way.
    store = BodyStore(in_memory=10, max_bytes=1000, tmpdir=str(tmp_path), chunk_size=10)
    store.append(b"y" * 100)
    waiting = asyncio.ensure_future(read_all(store))
    midway = store.reader()
    assert await midway.__anext__() == b"y" * 10
    await asyncio.sleep(0)
    store.close()
    assert open_files_under(tmp_path) == []
    with pytest.raises(BodyAborted):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(BodyAborted):
        await midway.__anext__()
    with pytest.raises(BodyAborted):
        store.append(b"z")


async def test_abort_stops_readers_and_frees_the_file(tmp_path: Path) -> None:
    store = BodyStore(in_memory=0, max_bytes=1000, tmpdir=str(tmp_path))
    store.append(b"abc")
    waiting = asyncio.ensure_future(read_all(store))
    await asyncio.sleep(0)
    store.abort()
    with pytest.raises(BodyAborted):
        await asyncio.wait_for(waiting, 1)
    assert open_files_under(tmp_path) == []
    store.close()


async def test_a_cancelled_reader_leaves_no_waiter() -> None:
    store = BodyStore(in_memory=10, max_bytes=100)
    task = asyncio.ensure_future(read_all(store))
    await asyncio.sleep(0)
    assert len(store._waiters) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store._waiters == []
    store.close()


async def test_memory_stays_bounded_for_a_large_body(tmp_path: Path) -> None:
    """32 MiB through a 1 MiB store: memory never holds more than 1 MiB, reads are 64 KiB."""
    store = BodyStore(in_memory=1 << 20, max_bytes=1 << 30, tmpdir=str(tmp_path))
    block = os.urandom(1 << 16)
    reader = store.reader()
    got = 0
    for _ in range(512):
        store.append(block)
        assert store.memory_bytes <= 1 << 20
        chunk = await reader.__anext__()
        assert chunk == block
        got += len(chunk)
    store.finish()
    assert got == 32 << 20 and store.spooled and store.memory_bytes == 0
    with pytest.raises(StopAsyncIteration):
        await reader.__anext__()
    store.close()
    assert open_files_under(tmp_path) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        BodyStore(in_memory=-1, max_bytes=10)
    with pytest.raises(ValueError):
        BodyStore(in_memory=1, max_bytes=10, chunk_size=0)
