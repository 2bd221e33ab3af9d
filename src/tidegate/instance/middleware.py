"""DrainMiddleware: makes any ASGI app drain-aware, under tidegate's runtime or your own server.

What it does per request, in order:
- `GET /healthz` (the path is configurable) answers 200 while serving and 503 once exiting, so
  the gateway's active checks agree with the drain. With `app_health=True` the app answers the
  path itself while serving (a new version can then fail its own check); exiting still wins.
- Once exiting, every other request gets the drain signal (drain_signal.py) and never reaches the
  app. A request already in the app finishes; if its response starts after exiting began it
  carries `Connection: close`, so the peer does not send another request on that connection.
- Responses carry `Tidegate-Version` when a version is known, which is how a rollout (and its
  tests) see that an instance came back on the new code.

Under `tidegate serve` / `python -m tidegate.instance` the drain runtime owns SIGTERM and the
listener (runtime.py). Under your own server, pass `handle_sigterm=True`: at lifespan startup the
middleware puts its own SIGTERM handler in front of the server's, enters the exiting state at
once, and hands the signal on to the server's handler after `drain_window` seconds — so the
server keeps its listener open long enough for late requests to get the signal instead of a
refused connection. Without lifespan support, call `state.begin()` yourself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from types import FrameType

from tidegate.instance.asgi import ASGIApp, Message, Receive, Scope, Send
from tidegate.instance.drain_signal import DRAIN_BODY, DRAIN_HEADER, DRAIN_HEADERS, refuse
from tidegate.instance.drain_state import DrainState

VERSION_HEADER = b"tidegate-version"
_CLOSE = (b"connection", b"close")


class DrainMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        state: DrainState | None = None,
        *,
        version: str | None = None,
        health_path: str = "/healthz",
        app_health: bool = False,
        handle_sigterm: bool = False,
        drain_window: float = 1.0,
    ) -> None:
        self.app = app
        self.state = state if state is not None else DrainState()
        self.version = version
        self.health_path = health_path
        self.app_health = app_health
        self.handle_sigterm = handle_sigterm
        self.drain_window = drain_window
        self._extra: list[tuple[bytes, bytes]] = [(VERSION_HEADER, version.encode())] if version else []
        self._sigterm_installed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            if kind == "lifespan" and self.handle_sigterm and not self._sigterm_installed:
                self._install_sigterm()
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if scope["path"] == self.health_path and (state.exiting or not self.app_health):
            await self._health(send)
            return
        if state.exiting:
            state.refused += 1
            await refuse(scope, receive, send, self._extra)
            return
        extra = self._extra

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.extend(extra)
                if state.exiting:
                    headers.append(_CLOSE)
                message["headers"] = headers
            await send(message)

        state.active += 1
        try:
            await self.app(scope, receive, send_marked)
        except asyncio.CancelledError:
            state.cut += 1
            raise
        finally:
            state.active -= 1
            state.served += 1

    async def _health(self, send: Send) -> None:
        exiting = self.state.exiting
        body = b"exiting\n" if exiting else b"ok\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *self._extra,
        ]
        if exiting:
            headers += [(DRAIN_HEADER, b"1"), _CLOSE]
        await send({"type": "http.response.start", "status": 503 if exiting else 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.state.exiting:
            await self.app(scope, receive, send)
            return
        self.state.refused += 1
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 503, "headers": DRAIN_HEADERS})
            await send({"type": "websocket.http.response.body", "body": DRAIN_BODY})
        else:
            await send({"type": "websocket.close", "code": 1012})  # 1012: service restart

    # --- SIGTERM under a server we do not own ---------------------------------------------------
    def _install_sigterm(self) -> None:
        self._sigterm_installed = True
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def hand_on(signum: int, frame: FrameType | None) -> None:
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.state.begin("SIGTERM"):
                loop.call_soon_threadsafe(loop.call_later, self.drain_window, hand_on, signum, frame)
            else:
                hand_on(signum, frame)  # a second SIGTERM: stop waiting

        with contextlib.suppress(ValueError):  # not the main thread: the user calls state.begin()
            signal.signal(signal.SIGTERM, on_sigterm)
