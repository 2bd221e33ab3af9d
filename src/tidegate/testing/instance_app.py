"""The ASGI app the instance and rollout tests run under `tidegate serve`, written to disk so a
test can change "the code installed" between restarts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tidegate.testing.process import child_env

# The app the instance tests run: says which version and port answered, echoes POST bodies'
# length and digest, /slow?s=N holds a request in flight. HEALTHY=False makes its own /healthz
# fail (run with --app-health) — a "new version that fails its health check".
APP = """
import asyncio, hashlib, json, os, sys, time
from urllib.parse import parse_qs

VERSION = {version!r}
HEALTHY = {healthy!r}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif m["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    digest, size = hashlib.sha256(), 0
    while True:
        m = await receive()
        digest.update(m.get("body", b""))
        size += len(m.get("body", b""))
        if not m.get("more_body"):
            break
    status = 200
    if scope["path"] == "/healthz":
        status = 200 if HEALTHY else 500
    elif scope["path"] == "/block":  # a stuck app: holds the event loop once ?after=FILE exists
        query = parse_qs(scope["query_string"].decode())
        print("tgapp: blocking request in the app", file=sys.stderr, flush=True)
        while not os.path.exists(query["after"][0]):
            await asyncio.sleep(0.01)
        time.sleep(float(query.get("s", ["60"])[0]))
    elif scope["path"] == "/slow":
        print("tgapp: slow request in the app", file=sys.stderr, flush=True)
        await asyncio.sleep(float(parse_qs(scope["query_string"].decode()).get("s", ["0.5"])[0]))
    body = json.dumps({{"version": VERSION, "port": scope["server"][1], "bytes": size,
                       "sha256": digest.hexdigest()}}).encode()
    await send({{"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def app_writer(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """write(version="1", healthy=True) writes tgapp.py (the code "on disk") under tmp_path and
    returns the env under which children import it (the tests' `write_app` fixture)."""
    appdir = tmp_path / "app"
    appdir.mkdir()

    def write(version: str = "1", healthy: bool = True) -> dict[str, str]:
        (appdir / "tgapp.py").write_text(APP.format(version=version, healthy=healthy))
        env = child_env({"PYTHONDONTWRITEBYTECODE": "1"})  # no stale .pyc when rewritten within a second
        env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + str(appdir)
        return env

    return write
