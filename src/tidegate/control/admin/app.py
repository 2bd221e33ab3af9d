"""The admin API as a plain ASGI app (interface.md, "Admin API"); routes are a small table.

| method and path                                          | answer                          |
| -------------------------------------------------------- | ------------------------------- |
| GET /                                                    | the dashboard (HTML)            |
| GET /openapi.json                                        | the OpenAPI 3 document          |
| GET /metrics                                             | Prometheus text format          |
| GET /api/pools                                           | {"pools": [Pool, ...]}          |
| GET /api/pools/{pool}                                    | Pool                            |
| POST /api/pools/{pool}/instances                         | 201 Instance                    |
| GET /api/pools/{pool}/instances/{address}                | Instance                        |
| DELETE /api/pools/{pool}/instances/{address}             | 200 removed, or 202 draining    |
| POST /api/pools/{pool}/instances/{address}/drain|enable|maint | Instance                   |
| PUT /api/pools/{pool}/instances/{address}/weight         | Instance                        |

Errors are {"error": "..."}: 400 bad input, 401 missing/wrong token, 404 unknown pool, instance
or route, 405 wrong method (with Allow), 409 duplicate instance, 413 body over 64 KiB, 503 when
the etcd registry (if configured) did not take a change (nothing changed then). The token,
when configured, guards everything but the dashboard page itself (a static page holding no data,
which asks for the token when the API answers 401).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidegate.control.admin import operations as ops
from tidegate.control.admin.dashboard import DASHBOARD_HTML
from tidegate.control.admin.openapi import openapi_document
from tidegate.control.admin.operations import ApiError

if TYPE_CHECKING:
    from tidegate.control.admin.service import AdminService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024
STATE_ACTIONS = ("drain", "enable", "maint")


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, content_type: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ):
        self.status = status
        self.body = body
        self.headers = ((b"content-type", content_type.encode()), *headers)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n", "application/json")


def error_response(status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    body = json.dumps({"error": message}).encode() + b"\n"
    return Response(status, body, "application/json", headers)


class AdminApp:
    def __init__(self, service: AdminService) -> None:
        self.svc = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        try:
            resp = await self._handle(scope, receive)
        except ApiError as exc:
            extra: tuple[tuple[bytes, bytes], ...] = ()
            if exc.status == 401:
                extra = ((b"www-authenticate", b'Bearer realm="tidegate"'),)
            elif isinstance(exc, _MethodNotAllowed):
                allow = ", ".join(exc.allowed) + (", HEAD" if "GET" in exc.allowed else "")
                extra = ((b"allow", allow.encode()),)
            resp = error_response(exc.status, exc.message, extra)
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [*resp.headers, (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": resp.body})

    # --- routing ------------------------------------------------------------------------------
    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        method: str = scope["method"]
        path: str = scope["path"]
        parts = [p for p in path.split("/") if p] if path != "/" else []
        if not parts:
            self._allow(method, ("GET",))
            return Response(200, DASHBOARD_HTML.encode(), "text/html; charset=utf-8")
        self._authorize(scope)
        body = await _read_body(receive)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if parts == ["openapi.json"]:
            self._allow(method, ("GET",))
            return json_response(openapi_document())
        if parts == ["metrics"]:
            self._allow(method, ("GET",))
            return Response(200, generate_latest(self.svc.registry), CONTENT_TYPE_LATEST)
        if parts[0] != "api" or len(parts) < 2 or parts[1] != "pools":
            raise ApiError(404, f"no such route: {path}")
        rest = parts[2:]
        if not rest:
            self._allow(method, ("GET",))
            return json_response({"pools": self.svc.pools_json()})
        pool = ops.find_pool(self.svc.pools, rest[0])
        if len(rest) == 1:
            self._allow(method, ("GET",))
            return json_response(self.svc.pool_json(pool))
        if rest[1] != "instances":
            raise ApiError(404, f"no such route: {path}")
        if len(rest) == 2:
            self._allow(method, ("POST",))
            new = ops.NewInstance(ops.parse_json_object(body))
            inst = await self.svc.add_instance(pool, new)
            return json_response(self.svc.instance_json(pool, inst), 201)
        if len(rest) > 4:
            raise ApiError(404, f"no such route: {path}")
        address = rest[2]
        if len(rest) == 3:
            self._allow(method, ("GET", "DELETE"))
            inst = ops.find_instance(pool, address)
            if method == "GET":
                return json_response(self.svc.instance_json(pool, inst))
            grace = _grace(query, self.svc.default_grace)
            removed = await self.svc.remove_instance(pool, inst, grace)
            doc = self.svc.instance_json(pool, inst)
            doc["removed"] = removed
            return json_response(doc, 200 if removed else 202)
        action = rest[3]
        if action in STATE_ACTIONS:
            self._allow(method, ("POST",))
            inst = ops.find_instance(pool, address)
            await self.svc.change_state(pool, inst, action)
            return json_response(self.svc.instance_json(pool, inst))
        if action == "weight":
            self._allow(method, ("PUT",))
            inst = ops.find_instance(pool, address)
            await self.svc.set_weight(pool, inst, ops.parse_json_object(body))
            return json_response(self.svc.instance_json(pool, inst))
        raise ApiError(404, f"no such route: {path}")

    def _allow(self, method: str, allowed: tuple[str, ...]) -> None:
        if method == "HEAD" and "GET" in allowed:
            return
        if method not in allowed:
            raise _MethodNotAllowed(method, allowed)

    def _authorize(self, scope: Scope) -> None:
        token = self.svc.token
        if token is None:
            return
        for name, value in scope["headers"]:
            if name == b"authorization" and value.strip():
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
                    return
                raise ApiError(401, "wrong token")
        raise ApiError(401, "this admin API needs Authorization: Bearer TOKEN")


class _MethodNotAllowed(ApiError):
    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(405, f"method {method} not allowed here; allowed: {', '.join(allowed)}")
        self.allowed = allowed


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _grace(query: dict[str, list[str]], default: float) -> float:
    values = query.get("grace")
    if not values:
        return default
    try:
        grace = float(values[-1])
    except ValueError:
        raise ApiError(400, f"grace must be a number of seconds, not {values[-1]!r}") from None
    if not 0 <= grace <= 86400:
        raise ApiError(400, "grace must be between 0 and 86400 seconds")
    return grace
