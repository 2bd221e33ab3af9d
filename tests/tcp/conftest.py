"""In-process TCP proxy and small instance servers on 127.0.0.1, port 0, for tests/tcp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from tidegate.config import Config, parse_config
from tidegate.control.runtime.pools import build_pools
from tidegate.service import StandaloneHost
from tidegate.tcp.service import TcpService, make_service
from tidegate.testing.tcp_peers import AddressBox, NamedEcho


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test here runs on both loops: `tidegate run` uses uvloop, whose transports
    differ from asyncio's in the details (they are not even asyncio.Transport subclasses)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def _toml(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)


def config_text(
    instances: list[str], scheduler: str = "round-robin", listeners: int = 1, **tcp: object
) -> str:
    insts = ", ".join(f'{{ address = "{a}" }}' for a in instances)
    text = f'[[pools]]\nname = "p"\nscheduler = "{scheduler}"\ninstances = [{insts}]\n'
    for _ in range(listeners):
        text += '[[tcp]]\nlisten = "127.0.0.1:0"\npool = "p"\n'
        text += "".join(f"{k} = {_toml(v)}\n" for k, v in tcp.items())
    return text


StartProxy = Callable[..., Awaitable[TcpService]]


@pytest.fixture
async def proxy() -> AsyncIterator[StartProxy]:
    """await proxy(["127.0.0.1:PORT", ...], connect_timeout="1s", ...) → a started TcpService."""
    started: list[TcpService] = []

    async def start(instances: list[str], scheduler: str = "round-robin", **tcp: object) -> TcpService:
        cfg = parse_config(config_text(instances, scheduler, **tcp))
        svc = make_service(cfg.tcp[0], StandaloneHost(cfg, build_pools(cfg)))
        await svc.start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        await svc.stop(0)


class Harness:
    """For tests that build configs and runtimes themselves (reload, several listeners)."""

    config_text = staticmethod(config_text)

    def __init__(self) -> None:
        self.services: list[TcpService] = []

    async def start(self, cfg: Config) -> tuple[StandaloneHost, list[TcpService]]:
        rt = StandaloneHost(cfg, build_pools(cfg))
        made = [make_service(t, rt) for t in cfg.tcp]
        for svc in made:
            await svc.start()
            self.services.append(svc)
        return rt, made


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    for svc in h.services:
        await svc.stop(0)


@pytest.fixture
async def named_echo() -> AsyncIterator[Callable[[str], Awaitable[NamedEcho]]]:
    made: list[NamedEcho] = []

    async def make(name: str) -> NamedEcho:
        echo = await NamedEcho(name).start()
        made.append(echo)
        return echo

    yield make
    for echo in made:
        await echo.close()


@pytest.fixture
def addresses() -> Iterator[AddressBox]:
    box = AddressBox()
    yield box
    box.close()


class Client:
    """A stream connection to the proxy, with bounded waits."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def line(self) -> str:
        return (await asyncio.wait_for(self.reader.readline(), 5)).decode().strip()

    async def exactly(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), 5)

    async def to_end(self, timeout: float = 10) -> bytes:
        """Everything until EOF; a reset also ends it."""
        chunks: list[bytes] = []

        async def run() -> None:
            try:
                while data := await self.reader.read(65536):
                    chunks.append(data)
            except ConnectionError:
                pass

        await asyncio.wait_for(run(), timeout)
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def client() -> AsyncIterator[Callable[[str], Awaitable[Client]]]:
    made: list[Client] = []

    async def open_(address: str) -> Client:
        host, _, port = address.rpartition(":")
        r, w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 5)
        c = Client(r, w)
        made.append(c)
        return c

    yield open_
    for c in made:
        c.close()
