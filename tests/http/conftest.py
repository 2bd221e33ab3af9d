from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.faults import FaultInstance
from tidegate.testing.gateway import GatewayThread


@pytest.fixture
def backends() -> Iterator[Callable[..., list[Backend]]]:
    """backends("a", "b", "c") → named backends running in threads of this process."""
    made: list[Backend] = []

    def make(*names: str) -> list[Backend]:
        out = [Backend(n) for n in names]
        made.extend(out)
        return out

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def faults() -> Iterator[Callable[..., FaultInstance]]:
    made: list[FaultInstance] = []

    def make(*args: Any, **kwargs: Any) -> FaultInstance:
        inst = FaultInstance(*args, **kwargs)
        made.append(inst)
        return inst

    yield make
    for f in made:
        f.close()


@pytest.fixture
def gateway() -> Iterator[Callable[[dict[str, Any]], GatewayThread]]:
    made: list[GatewayThread] = []

    def start(cfg: dict[str, Any]) -> GatewayThread:
        gw = GatewayThread(cfg)
        made.append(gw)
        return gw

    yield start
    for gw in made:
        gw.stop(grace=2.0)
