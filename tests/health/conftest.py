"""Small real backends on 127.0.0.1 for the health tests: they answer every request with a status
the test sets, and can be stopped and started again on the same port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


class StatusBackend:
    def __init__(self) -> None:
        self.status = 200
        self.port = 0
        self.hits = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> StatusBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Like a killed process: the listener goes and open connections are cut."""
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1
            body = b"ok"
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (self.status, len(body), body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def backends() -> AsyncIterator[list[StatusBackend]]:
    made: list[StatusBackend] = []

    class Factory(list[StatusBackend]):
        async def new(self) -> StatusBackend:
            b = await StatusBackend().start()
            made.append(b)
            return b

    yield Factory()  # type: ignore[misc]
    for b in made:
        if b._server is not None:
            await b.stop()
