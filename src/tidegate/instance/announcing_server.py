"""uvicorn.Server as tidegate runs it: it prints `tidegate: NAME listening on HOST:PORT` once
bound, and leaves the process's signals to its owner (uvicorn would install its own handlers and
re-raise SIGTERM after shutdown, which kills the process with -15 instead of exiting 0)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator

import uvicorn


class AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, name: str, announce: str = "") -> None:
        super().__init__(config)
        self.name = name
        self.announce = announce  # appended to the listening line
        self.bound: list[tuple[str, int]] = []
        self.ready = asyncio.Event()  # set once listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for server in self.servers:
            for sock in server.sockets or ():
                host, port = sock.getsockname()[:2]
                self.bound.append((host, port))
                shown = f"[{host}]" if ":" in host else host
                line = f"tidegate: {self.name} listening on {shown}:{port}{self.announce}"
                print(line, file=sys.stderr, flush=True)
        self.ready.set()
