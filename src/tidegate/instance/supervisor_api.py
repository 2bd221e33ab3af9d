"""The supervisor's control endpoint (loopback, or `--control-listen`): what `tidegate upgrade`
talks to.

    GET  /instances                        → [{address, state, generation, pid, version, …}]
    POST /instances/{address}/restart      → 202 {address, generation}: SIGTERM now; the instance
                                             drains, exits and is started again; the restart is
                                             complete when `generation` is reached and state is
                                             "running" (poll GET /instances)
    GET  /healthz                          → 200

`{address}` is HOST:PORT as registered with the gateway (or just the port). JSON in and out;
errors are {"error": …} with a 4xx status, like the admin API.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

from tidegate.instance.asgi import Receive, Scope, Send, answer_lifespan
from tidegate.instance.child_state import ChildState
from tidegate.instance.supervisor import Supervisor


async def _json(send: Send, status: int, body: object) -> None:
    data = json.dumps(body).encode() + b"\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def control_app(supervisor: Supervisor):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, parts = scope["method"], [unquote(p) for p in scope["path"].strip("/").split("/")]
        if parts == ["healthz"] and method == "GET":
            await _json(send, 200, {"ok": True})
        elif parts == ["instances"] and method == "GET":
            await _json(send, 200, supervisor.view())
        elif len(parts) == 3 and parts[0] == "instances" and parts[2] == "restart":
            if method != "POST":
                await _json(send, 405, {"error": "use POST"})
                return
            child = supervisor.find(parts[1])
            if child is None:
                await _json(send, 404, {"error": f"no instance {parts[1]} under this supervisor"})
            elif child.state in (ChildState.STOPPING, ChildState.STOPPED):
                await _json(send, 409, {"error": f"instance {child.address} is {child.state.value}"})
            else:
                generation = supervisor.restart(child)
                await _json(send, 202, {"address": child.public, "generation": generation})
        else:
            await _json(send, 404, {"error": f"no such endpoint: {method} {scope['path']}"})

    return app
