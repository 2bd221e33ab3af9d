"""Every route of the admin API in one table: the router (app.py) dispatches from it and the
OpenAPI document (openapi.py) is made from it, so what is served and what is described cannot
drift apart. Matching a request to a route is pure (no I/O) and tested on its own.

A path template's `{name}` segments match one path segment each, handed to the handler by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tidegate.control.admin.bodies import NewInstance, Weight

INSTANCE = "/api/pools/{pool}/instances/{address}"

# Error answers a route may give, each described once in the document (openapi.py).
READ_ERRORS = (400, 401, 404, 405)
# Calls that change something: with the etcd registry, 503 when etcd could not be reached
# (nothing changed), 504 when it did not answer in time (outcome unknown).
CHANGE_ERRORS = (*READ_ERRORS, 503, 504)


def _split(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


@dataclass(frozen=True)
class Reply:
    """One answer a route gives: its status, what it means, and its body."""

    status: int
    description: str
    schema: str | None = None  # a component schema's name (application/json)
    media: str = "application/json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # the AdminApp method that answers it
    operation_id: str
    summary: str
    replies: tuple[Reply, ...]
    errors: tuple[int, ...] = READ_ERRORS
    body: type[BaseModel] | None = None
    query: tuple[Mapping[str, Any], ...] = ()  # OpenAPI query parameters
    public: bool = False  # served without the admin token
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", _split(self.path))

    def params(self) -> list[str]:
        return [s[1:-1] for s in self.segments if s.startswith("{")]


def _state(verb: str, effect: str) -> Route:
    return Route(
        "POST",
        f"{INSTANCE}/{verb}",
        verb,
        f"{verb}Instance",
        effect,
        (Reply(200, "the instance after the change", "Instance"),),
        CHANGE_ERRORS,
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/",
        "dashboard",
        "dashboard",
        "the dashboard: an HTML page polling /api/pools, /api/history and /api/events",
        (Reply(200, "HTML", None, "text/html"),),
        (405,),
        public=True,
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "openapi",
        "this document",
        (Reply(200, "the OpenAPI document", "object"),),
        (401, 405),
    ),
    Route(
        "GET",
        "/livez",
        "livez",
        "livez",
        "liveness: 200 while the process's event loop answers (no token needed)",
        (Reply(200, "alive", None, "text/plain"),),
        (405,),
        public=True,
    ),
    Route(
        "GET",
        "/readyz",
        "readyz",
        "readyz",
        "readiness: 200 once every listener is bound and the first health verdicts are in, 503 "
        "before that and while stopping, with the reasons (no token needed)",
        (Reply(200, "ready", None, "text/plain"), Reply(503, "not ready, and why", None, "text/plain")),
        (405,),
        public=True,
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "metrics",
        "Prometheus text exposition (tidegate_instance_* with labels pool, instance)",
        (Reply(200, "metrics", None, "text/plain"),),
        (401, 405),
    ),
    Route(
        "GET",
        "/api/pools",
        "list_pools",
        "listPools",
        "every pool with its instances and their figures",
        (Reply(200, "all pools", "Pools"),),
        (401, 405),
    ),
    Route(
        "GET",
        "/api/history",
        "history",
        "getHistory",
        "the last minutes of every pool's and instance's figures, one point a second (the charts)",
        (Reply(200, "points oldest first; every series aligns with times", "History"),),
        (400, 401, 405),
        query=(
            {
                "name": "since",
                "in": "query",
                "required": False,
                "description": "only points newer than this time (seconds since the epoch)",
                "schema": {"type": "number"},
            },
        ),
    ),
    Route(
        "GET",
        "/api/events",
        "events",
        "getEvents",
        "the latest state changes of instances and their joining and leaving pools, newest first",
        (Reply(200, "events, newest first", "Events"),),
        (400, 401, 405),
        query=(
            {"name": "pool", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "instance",
                "in": "query",
                "required": False,
                "description": "HOST:PORT, as the pool lists it",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
        ),
    ),
    Route(
        "GET",
        "/static/{name}",
        "static",
        "staticFile",
        "the dashboard's vendored files (uPlot's script and style sheet, its license); cached a day",
        (Reply(200, "the file", None, "application/octet-stream"),),
        (404, 405),
        public=True,
    ),
    Route("GET", "/api/pools/{pool}", "get_pool", "getPool", "one pool", (Reply(200, "the pool", "Pool"),)),
    Route(
        "POST",
        "/api/pools/{pool}/instances",
        "add_instance",
        "addInstance",
        "add (register) an instance; it takes work at once",
        (Reply(201, "the new instance", "Instance"),),
        (*CHANGE_ERRORS, 409),
        body=NewInstance,
    ),
    Route(
        "GET",
        INSTANCE,
        "get_instance",
        "getInstance",
        "one instance",
        (Reply(200, "the instance", "Instance"),),
    ),
    Route(
        "DELETE",
        INSTANCE,
        "remove_instance",
        "removeInstance",
        "remove: drain first, remove once nothing is in flight or after the grace",
        (
            Reply(200, "removed now (nothing was in flight); removed: true", "Instance"),
            Reply(202, "draining; removed once idle; removed: false", "Instance"),
        ),
        CHANGE_ERRORS,
        query=(
            {
                "name": "grace",
                "in": "query",
                "required": False,
                "description": "seconds in-flight work may take (default: the process's --grace)",
                "schema": {"type": "number", "minimum": 0, "maximum": 86400},
            },
        ),
    ),
    _state("drain", "draining: no new work, in-flight work finishes"),
    _state(
        "enable",
        "back in rotation (through slow-start when the pool has one; down while its health "
        "checks fail); ends an ejection and cancels a pending removal",
    ),
    _state("maint", "maintenance: out of rotation until enabled"),
    Route(
        "PUT",
        f"{INSTANCE}/weight",
        "set_weight",
        "setWeight",
        "set the weight (0 takes no new work)",
        (Reply(200, "the instance after the change", "Instance"),),
        CHANGE_ERRORS,
        body=Weight,
    ),
    Route(
        "POST",
        "/api/self-upgrade",
        "self_upgrade",
        "selfUpgrade",
        "SIGUSR2: a new process from the code installed now takes the listeners and the operator "
        "state over; answered once it is current (this process then drains and exits)",
        (Reply(200, "the new process is current", "SelfUpgrade"),),
        (401, 405, 409, 500),
    ),
)


class NoRoute(Exception):
    """No route has this path."""


class WrongMethod(Exception):
    """Routes have this path, none with this method."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _match(segments: tuple[str, ...], template: tuple[str, ...]) -> dict[str, str] | None:
    if len(segments) != len(template):
        return None
    params: dict[str, str] = {}
    for given, want in zip(segments, template, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = given
        elif given != want:
            return None
    return params


def resolve(method: str, path: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, dict[str, str]]:
    """The route for METHOD PATH and its path parameters. HEAD is GET without the body.

    Raises NoRoute when no route has the path, WrongMethod (with what is allowed) when some do.
    """
    segments = _split(path)
    allowed: list[str] = []
    found: tuple[Route, dict[str, str]] | None = None
    for route in routes:
        params = _match(segments, route.segments)
        if params is None:
            continue
        if route.method not in allowed:
            allowed.append(route.method)
        if found is None and (route.method == method or (method == "HEAD" and route.method == "GET")):
            found = (route, params)
    if found is not None:
        return found
    if not allowed:
        raise NoRoute(path)
    raise WrongMethod(tuple(allowed))
