"""A whole runtime in the test's event loop (admin API on 127.0.0.1 port 0) and an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvloop

from tidegate.config.model import Config
from tidegate.control.admin.service import AdminService
from tidegate.control.runtime.process import Runtime


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    # The loop `tidegate run` uses. (On the stdlib loop, keep-alive calls to the in-process
    # uvicorn answer after ~40 ms, a delayed-ACK stall that uvloop does not show.)
    return {"uvloop": uvloop.new_event_loop}


class Running:
    def __init__(self, rt: Runtime, client: httpx.AsyncClient) -> None:
        self.rt = rt
        self.client = client

    @property
    def admin(self) -> AdminService:
        return next(s for s in self.rt.services if isinstance(s, AdminService))


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    made: list[Running] = []

    async def start(doc: dict[str, Any], token: str | None = None) -> Running:
        doc = {"admin": {"listen": "127.0.0.1:0", **({"token": token} if token else {})}, **doc}
        rt = Runtime(Config.model_validate(doc), grace=5.0)
        await rt.start()
        admin = next(s for s in rt.services if isinstance(s, AdminService))
        host, port = admin.address
        headers = {"authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=headers, timeout=5)
        r = Running(rt, client)
        made.append(r)
        return r

    yield start
    for r in made:
        await r.client.aclose()
        await r.rt.stop()
