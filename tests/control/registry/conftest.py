"""A real etcd for the registry tests, and tidegate runtimes sharing it in the test's loop."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from tidegate.config.model import Config
from tidegate.control.admin.service import AdminService
from tidegate.control.registry.service import EtcdRegistry
from tidegate.control.runtime.process import Runtime
from tidegate.testing.etcd import Etcd

_prefixes = itertools.count()


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the tests that only need one (each test under a prefix of its own)."""
    etcd = Etcd(tmp_path_factory.mktemp("etcd")).start()
    yield etcd
    etcd.stop()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd of this test's own, to stop and start again."""
    made = Etcd(tmp_path / "etcd")
    yield made
    made.stop()


@pytest.fixture
def prefix() -> str:
    return f"/t{next(_prefixes)}/"


class Running:
    def __init__(self, rt: Runtime, client: httpx.AsyncClient) -> None:
        self.rt = rt
        self.client = client

    @property
    def registry(self) -> EtcdRegistry:
        return next(s for s in self.rt.services if isinstance(s, EtcdRegistry))

    @property
    def admin(self) -> AdminService:
        return next(s for s in self.rt.services if isinstance(s, AdminService))


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    """running(endpoint, prefix, pools) → a Runtime with the etcd registry and an admin API."""
    made: list[Running] = []

    async def start(endpoint: str, prefix: str, pools: list[dict[str, Any]]) -> Running:
        doc = {
            "admin": {"listen": "127.0.0.1:0"},
            "registry": {"type": "etcd", "endpoints": [endpoint], "prefix": prefix, "lease": "2s"},
            "pools": pools,
        }
        rt = Runtime(Config.model_validate(doc), grace=5.0)
        await rt.start()
        admin = next(s for s in rt.services if isinstance(s, AdminService))
        host, port = admin.address  # type: ignore[misc]
        client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5)
        r = Running(rt, client)
        made.append(r)
        return r

    yield start
    for r in made:
        await r.client.aclose()
        await r.rt.stop()
