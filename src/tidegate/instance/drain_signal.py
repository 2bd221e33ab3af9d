"""The drain signal (docs/architecture.md, "The drain signal"): 503, `Tidegate-Draining: 1`, `Connection: close`.

It is a promise that the request was not processed, so the gateway may retry it elsewhere
whatever its method. Before answering we read the request body (up to a bound): closing a socket
with unread bytes in its receive buffer makes the kernel send RST instead of FIN, and an RST can
destroy the 503 in the peer's buffer before the gateway reads it — the very race the signal is
there to avoid. A request sent with `Expect: 100-continue` has sent no body yet; we do not ask
for it (uvicorn only sends `100 Continue` when the app first calls receive()).
"""

from __future__ import annotations

from tidegate.instance.asgi import Receive, Scope, Send

DRAIN_HEADER = b"tidegate-draining"
DRAIN_BODY = b"draining: this instance is exiting; the request was not processed\n"
DRAIN_HEADERS: list[tuple[bytes, bytes]] = [
    (DRAIN_HEADER, b"1"),
    (b"connection", b"close"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(DRAIN_BODY)).encode()),
    (b"retry-after", b"0"),
]
# Bodies beyond this are not read before answering (a peer sending that much gets a reset rather
# than a slow refusal; the gateway keeps bodies for retry, so nothing is lost either way).
MAX_BODY_READ = 1024 * 1024


def expects_continue(scope: Scope) -> bool:
    return any(k == b"expect" and v.lower() == b"100-continue" for k, v in scope.get("headers", ()))


async def refuse(scope: Scope, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
    """Answer one HTTP request with the drain signal, without touching the app."""
    if not expects_continue(scope):
        seen = 0
        while seen <= MAX_BODY_READ:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    await send({"type": "http.response.start", "status": 503, "headers": DRAIN_HEADERS + extra})
    await send({"type": "http.response.body", "body": DRAIN_BODY})
