"""The admin API as a plain ASGI app (docs/operations.md, "Admin API").

Its routes are the table in routes.py, which the OpenAPI document is made from too: each route
names the method here that answers it (`Call` carries the path parameters, query and body).

Errors are {"error": "..."}: 400 bad input, 401 missing/wrong token, 404 unknown pool, instance
or route, 405 wrong method (with Allow), 409 duplicate instance, 413 body over 64 KiB, 503 when
the etcd registry (if configured) could not be reached (nothing changed then), 504 when it did
not answer a change in time (outcome unknown; the registry converges on what etcd holds). The token,
when configured, guards everything but the dashboard page itself (a static page holding no data,
which asks for the token when the API answers 401).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidegate.control.admin import operations as ops
from tidegate.control.admin.bodies import NewInstance, Weight, parse_body
from tidegate.control.admin.dashboard import dashboard_html, static_file
from tidegate.control.admin.openapi import openapi_document
from tidegate.control.admin.operations import ApiError
from tidegate.control.admin.routes import NoRoute, WrongMethod, resolve

if TYPE_CHECKING:
    from tidegate.balancing.instance import Instance
    from tidegate.balancing.pool import Pool
    from tidegate.control.admin.service import AdminService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024


class Call(NamedTuple):
    """What a route's method gets: the path's parameters, the query, the body."""

    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    actor: str | None = None  # the Tidegate-Actor header (operations.actor_of)


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
        headers = list(resp.headers)
        if not any(name == b"cache-control" for name, _ in headers):
            headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    # --- routing ------------------------------------------------------------------------------
    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            route, params = resolve(method, path)
        except NoRoute:
            if path != "/":
                self._authorize(scope)  # an unknown route tells nothing without the token
            raise ApiError(404, f"no such route: {path}") from None
        except WrongMethod as exc:
            if path != "/":
                self._authorize(scope)
            raise _MethodNotAllowed(method, exc.allowed) from None
        if not route.public:
            self._authorize(scope)
        body = await _read_body(receive)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        handler: Callable[[Call], Awaitable[Response]] = getattr(self, route.handler)
        actor = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"tidegate-actor"), None)
        return await handler(Call(params, query, body, actor))

    # --- one method per route (routes.py) --------------------------------------------------------
    async def dashboard(self, call: Call) -> Response:
        return Response(200, dashboard_html(), "text/html; charset=utf-8")

    async def static(self, call: Call) -> Response:
        found = static_file(call.params["name"])
        if found is None:
            raise ApiError(404, f"no such file: {call.params['name']}")
        body, content_type = found
        # The page asks for these with ?v=static_version(), so a day's caching outlives no update.
        return Response(200, body, content_type, ((b"cache-control", b"public, max-age=86400"),))

    async def history(self, call: Call) -> Response:
        since = _number(call.query, "since")
        return json_response(self.svc.history_json(since))

    async def events(self, call: Call) -> Response:
        limit = _number(call.query, "limit")
        if limit is not None and (limit != int(limit) or not 1 <= limit <= 1000):
            raise ApiError(400, "limit must be an integer from 1 to 1000")
        pool = call.query.get("pool", [None])[-1]
        address = call.query.get("instance", [None])[-1]
        return json_response(self.svc.events_json(pool, address, int(limit or 100)))

    async def openapi(self, call: Call) -> Response:
        return json_response(openapi_document())

    async def livez(self, call: Call) -> Response:
        return Response(200, b"ok\n", "text/plain; charset=utf-8")

    async def readyz(self, call: Call) -> Response:
        why = self.svc.runtime.not_ready()
        if why:
            return Response(503, ("not ready: " + "; ".join(why) + "\n").encode(), "text/plain; charset=utf-8")
        return Response(200, b"ready\n", "text/plain; charset=utf-8")

    async def metrics(self, call: Call) -> Response:
        return Response(200, generate_latest(self.svc.registry), CONTENT_TYPE_LATEST)

    async def self_upgrade(self, call: Call) -> Response:
        ok, outcome = await self.svc.runtime.self_upgrade()
        if ok:
            return json_response({"upgraded": True, "pid": int(outcome.removeprefix("pid "))})
        raise ApiError(409 if "under way" in outcome else 500, f"self-upgrade failed: {outcome}")

    async def list_pools(self, call: Call) -> Response:
        return json_response({"pools": self.svc.pools_json()})

    async def get_pool(self, call: Call) -> Response:
        return json_response(self.svc.pool_json(self._pool(call)))

    async def add_instance(self, call: Call) -> Response:
        pool = self._pool(call)
        new = parse_body(NewInstance, call.body)
        inst = await self.svc.add_instance(pool, new)
        return json_response(self.svc.instance_json(pool, inst), 201)

    async def get_instance(self, call: Call) -> Response:
        pool, inst = self._instance(call)
        return json_response(self.svc.instance_json(pool, inst))

    async def remove_instance(self, call: Call) -> Response:
        pool, inst = self._instance(call)
        grace = _grace(call.query, self.svc.default_grace)
        removed = await self.svc.remove_instance(pool, inst, grace)
        doc = self.svc.instance_json(pool, inst)
        doc["removed"] = removed
        return json_response(doc, 200 if removed else 202)

    async def drain(self, call: Call) -> Response:
        return await self._change_state(call, "drain")

    async def enable(self, call: Call) -> Response:
        return await self._change_state(call, "enable")

    async def maint(self, call: Call) -> Response:
        return await self._change_state(call, "maint")

    async def set_weight(self, call: Call) -> Response:
        pool, inst = self._instance(call)
        weight = parse_body(Weight, call.body).weight
        await self.svc.set_weight(pool, inst, weight)
        return json_response(self.svc.instance_json(pool, inst))

    async def _change_state(self, call: Call, action: str) -> Response:
        pool, inst = self._instance(call)
        await self.svc.change_state(pool, inst, action, ops.actor_of(call.actor))
        return json_response(self.svc.instance_json(pool, inst))

    def _pool(self, call: Call) -> Pool:
        return ops.find_pool(self.svc.pools, call.params["pool"])

    def _instance(self, call: Call) -> tuple[Pool, Instance]:
        pool = self._pool(call)
        return pool, ops.find_instance(pool, call.params["address"])

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


def _number(query: dict[str, list[str]], name: str) -> float | None:
    values = query.get(name)
    if not values:
        return None
    try:
        value = float(values[-1])
    except ValueError:
        raise ApiError(400, f"{name} must be a number, not {values[-1]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ApiError(400, f"{name} must be a finite number")
    return value


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
