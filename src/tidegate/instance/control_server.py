"""The supervisor's control endpoint as a running uvicorn server (loopback unless told otherwise)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import uvicorn

from tidegate.instance.announcing_server import AnnouncingServer
from tidegate.instance.supervisor import Supervisor
from tidegate.instance.supervisor_api import control_app


@dataclass
class ControlServer:
    server: AnnouncingServer
    task: asyncio.Task[None]
    url: str

    async def close(self) -> None:
        self.server.should_exit = True
        await asyncio.wait([self.task], timeout=5)


async def start_control_server(
    supervisor: Supervisor, port: int = 0, host: str = "127.0.0.1", advertise: str | None = None
) -> ControlServer:
    """The running endpoint; its `url` is what others reach it by (on `advertise` when given)."""
    config = uvicorn.Config(
        control_app(supervisor),
        host=host,
        port=port,
        loop="none",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = AnnouncingServer(config, "supervisor")
    task = asyncio.ensure_future(server.serve())
    ready = asyncio.ensure_future(server.ready.wait())
    await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        task.result()  # raises what stopped it (uvicorn exits on a bind error)
        raise RuntimeError("the supervisor's control endpoint did not start")
    bound_host, bound_port = server.bound[0]
    shown = advertise or bound_host
    return ControlServer(server, task, f"http://{f'[{shown}]' if ':' in shown else shown}:{bound_port}")
