"""Real HTTP backends for tests: one small ASGI app served by uvicorn, in a thread or a process.

Each backend knows its name and answers with it, so a test counts where requests went by reading
response bodies. Routes (any method):

| path | answer |
| --- | --- |
| `/echo` | the request body, with its Content-Length |
| `/sha256` | `HEXDIGEST LENGTH` of the request body, read streaming (big uploads) |
| `/headers` | JSON: method, path, query, http_version, client, headers (list of [name, value]) |
| `/bytes/N` | N bytes (`x`) with Content-Length, sent in 64 KiB pieces |
| `/chunked/N` | N bytes without Content-Length (uvicorn frames them chunked) |
| `/slow?ms=N` | waits N ms, then answers the name |
| `/status/N` | status N, body = the name |
| `/drain` | the drain signal: 503, `Tidegate-Draining: 1`, `Connection: close` |
| WebSocket, any path | echo of each message, text or bytes |
| anything else | the name, `X-Backend: NAME` |

`Backend(name)` runs one in a thread of the test process (ready as soon as it exists: the
socket is bound and listening before uvicorn starts; `paths` and `wait_for_request` tell what
arrived); `python -m tidegate.testing.backends NAME`
runs one as a process and prints `tidegate: backend listening on HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PIECE = 64 * 1024


def make_app(
    name: str, on_request: Callable[[str], None] | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    name_b = name.encode()

    async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        headers = [*headers, (b"x-backend", name_b), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def read_body(receive: Receive) -> bytes:
        parts = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        return b"".join(parts)

    async def websocket(receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif msg["type"] == "websocket.receive":
                if msg.get("text") is not None:
                    await send({"type": "websocket.send", "text": msg["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
            else:
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await websocket(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if on_request is not None:
            on_request(path)
        text = [(b"content-type", b"text/plain")]
        if path == "/echo":
            await respond(send, 200, await read_body(receive), text)
        elif path == "/sha256":
            digest, size = hashlib.sha256(), 0
            while True:
                msg = await receive()
                chunk = msg.get("body", b"")
                digest.update(chunk)
                size += len(chunk)
                if not msg.get("more_body") or msg["type"] == "http.disconnect":
                    break
            await respond(send, 200, f"{digest.hexdigest()} {size}".encode(), text)
        elif path == "/headers":
            await read_body(receive)
            info = {
                "name": name,
                "method": scope["method"],
                "path": path,
                "query": scope["query_string"].decode(),
                "http_version": scope["http_version"],
                "client": list(scope["client"] or ()),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            }
            await respond(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])
        elif path.startswith("/bytes/") or path.startswith("/chunked/"):
            await read_body(receive)
            size = int(path.rsplit("/", 1)[1])
            headers = [*text, (b"x-backend", name_b)]
            if path.startswith("/bytes/"):
                headers.append((b"content-length", str(size).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            piece = b"x" * _PIECE
            left = size
            while left > 0:
                n = min(left, _PIECE)
                left -= n
                await send({"type": "http.response.body", "body": piece[:n], "more_body": left > 0})
            if size == 0:
                await send({"type": "http.response.body", "body": b""})
        elif path == "/slow":
            await read_body(receive)
            query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
            await asyncio.sleep(int(query.get("ms", "100")) / 1000)
            await respond(send, 200, name_b, text)
        elif path.startswith("/status/"):
            await read_body(receive)
            await respond(send, int(path.rsplit("/", 1)[1]), name_b, text)
        elif path == "/drain":
            await respond(send, 503, b"draining", [(b"tidegate-draining", b"1"), (b"connection", b"close")])
        else:
            await read_body(receive)
            await respond(send, 200, name_b, text)

    return app


def _config(name: str, on_request: Callable[[str], None] | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        make_app(name, on_request),
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="httptools",
        ws="websockets-sansio",
        timeout_keep_alive=30,
    )


def _listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Backend:
    """A named backend on 127.0.0.1 in a thread of this process; `stop()` (or `with`) ends it."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self._sock = _listening_socket(port=port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.address = f"{self.host}:{self.port}"
        self.paths: list[str] = []  # every HTTP request's path, in arrival order
        self._arrived = threading.Condition()
        self._server = uvicorn.Server(_config(name, self._record))
        self._thread = threading.Thread(target=self._run, name=f"backend-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import uvloop

        uvloop.run(self._server.serve(sockets=[self._sock]))

    def _record(self, path: str) -> None:
        with self._arrived:
            self.paths.append(path)
            self._arrived.notify_all()

    def wait_for_request(self, path: str, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` requests for `path` have arrived (they may still be in progress)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.paths.count(path) >= count, timeout):
                raise AssertionError(
                    f"backend {self.name}: not {count} requests for {path} within {timeout}s"
                )

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.testing.backends")
    ap.add_argument("name")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    sock = _listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"tidegate: backend listening on {host}:{port}", file=sys.stderr, flush=True)
    server = uvicorn.Server(_config(args.name))
    import uvloop

    uvloop.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
