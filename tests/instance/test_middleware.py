"""DrainMiddleware driven through the ASGI interface in-process (the app side of the drain)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidegate.instance import DrainMiddleware, DrainState

Message = dict[str, Any]


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.hold = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.entered.set()
        if self.hold:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(
    path: str = "/", method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {"type": "http", "path": path, "method": method, "headers": headers or [], "query_string": b""}


async def call(
    mw: DrainMiddleware, sc: dict[str, Any], body_chunks: list[bytes] | None = None
) -> tuple[list[Message], int]:
    """Run one request; returns what was sent and how many body messages the middleware read."""
    chunks = list(body_chunks or [b""])
    read = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        read += 1
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(m: Message) -> None:
        sent.append(m)

    await mw(sc, receive, send)
    return sent, read


def headers(sent: list[Message]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


async def test_serving_reaches_the_app_and_says_its_version() -> None:
    app = Recorder()
    mw = DrainMiddleware(app, version="7")
    sent, _ = await call(mw, scope())
    assert app.calls == 1 and sent[0]["status"] == 200
    assert headers(sent)[b"tidegate-version"] == b"7"
    assert b"connection" not in headers(sent)
    assert (mw.state.served, mw.state.active) == (1, 0)


async def test_healthz_agrees_with_the_drain() -> None:
    app = Recorder()
    mw = DrainMiddleware(app)
    sent, _ = await call(mw, scope("/healthz"))
    assert sent[0]["status"] == 200 and app.calls == 0
    mw.state.begin()
    sent, _ = await call(mw, scope("/healthz"))
    assert sent[0]["status"] == 503
    assert headers(sent)[b"tidegate-draining"] == b"1"


async def test_app_health_passes_through_while_serving_only() -> None:
    app = Recorder()
    mw = DrainMiddleware(app, app_health=True)
    await call(mw, scope("/healthz"))
    assert app.calls == 1
    mw.state.begin()
    sent, _ = await call(mw, scope("/healthz"))
    assert sent[0]["status"] == 503 and app.calls == 1


async def test_exiting_answers_the_drain_signal_after_reading_the_body() -> None:
    app = Recorder()
    mw = DrainMiddleware(app, version="1")
    mw.state.begin("test")
    sent, read = await call(mw, scope("/echo", "POST"), [b"a" * 1000, b"b" * 1000, b"c"])
    assert app.calls == 0  # the request never reached the app
    assert sent[0]["status"] == 503
    h = headers(sent)
    assert h[b"tidegate-draining"] == b"1" and h[b"connection"] == b"close"
    assert int(h[b"content-length"]) == len(sent[1]["body"])
    assert read == 3  # every chunk read, so closing the socket sends FIN, not RST
    assert mw.state.refused == 1


async def test_expect_continue_body_is_not_asked_for() -> None:
    mw = DrainMiddleware(Recorder())
    mw.state.begin()
    sent, read = await call(mw, scope("/", "POST", [(b"expect", b"100-continue")]), [b"x"])
    assert read == 0 and sent[0]["status"] == 503


async def test_an_in_flight_request_finishes_and_closes_its_connection() -> None:
    app = Recorder()
    app.hold = True
    mw = DrainMiddleware(app)
    task = asyncio.ensure_future(call(mw, scope()))
    await app.entered.wait()
    assert mw.state.active == 1
    mw.state.begin()
    app.release.set()
    sent, _ = await task
    assert sent[0]["status"] == 200
    assert headers(sent)[b"connection"] == b"close"
    assert mw.state.active == 0


async def test_a_cancelled_request_is_counted_as_cut() -> None:
    app = Recorder()
    app.hold = True
    mw = DrainMiddleware(app)
    task = asyncio.ensure_future(call(mw, scope()))
    await app.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (mw.state.cut, mw.state.active) == (1, 0)


def test_begin_is_once_and_tells_listeners() -> None:
    state = DrainState()
    heard: list[str] = []
    state.on_exiting(lambda s: heard.append(s.reason))
    assert state.begin("first") is True
    assert state.begin("second") is False
    state.on_exiting(lambda s: heard.append("late"))
    assert heard == ["first", "late"]
