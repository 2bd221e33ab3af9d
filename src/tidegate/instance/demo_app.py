"""The demo app: says which instance and which version answered.

The version is read once at start-up, from the file named by `TIDEGATE_DEMO_VERSION_FILE` when it
is set (`tidegate demo` makes one, so a rolling upgrade can change it), else "1". A restarted
instance reads it again: that is "the code now on disk" for the demo.

Routes: GET / (a line of text), GET /slow?s=0.5 (answers after a delay, to have something in
flight), POST /echo (returns the body's length and SHA-256).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import parse_qs

from tidegate.instance.asgi import Receive, Scope, Send, answer_lifespan


def _read_version() -> str:
    path = os.environ.get("TIDEGATE_DEMO_VERSION_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or "1"
        except OSError:
            pass
    return "1"


VERSION = _read_version()
_PID = os.getpid()


async def _reply(send: Send, status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    host, port = scope["server"] or ("?", 0)
    who = f"{host}:{port}"
    path, method = scope["path"], scope["method"]
    if path == "/echo" and method == "POST":
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        body = {"instance": who, "version": VERSION, "bytes": size, "sha256": digest.hexdigest()}
        await _reply(send, 200, json.dumps(body).encode() + b"\n", b"application/json")
        return
    if path == "/slow":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["0.5"])[0])
        await asyncio.sleep(min(seconds, 60.0))
    if path in ("/", "/slow"):
        await _reply(send, 200, f"hello from {who} (version {VERSION}, pid {_PID})\n".encode())
        return
    await _reply(send, 404, b"not found\n")
