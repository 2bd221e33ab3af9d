"""The admin API's route table (control/admin/routes.py): matching, and that the router and the
OpenAPI document are both made from it."""

from __future__ import annotations

import pytest

from tidegate.control.admin.app import AdminApp
from tidegate.control.admin.openapi import openapi_document
from tidegate.control.admin.routes import ROUTES, NoRoute, WrongMethod, resolve


@pytest.mark.parametrize(
    ("method", "path", "handler", "params"),
    [
        ("GET", "/", "dashboard", {}),
        ("HEAD", "/", "dashboard", {}),
        ("GET", "/api/pools", "list_pools", {}),
        ("GET", "/api/pools/", "list_pools", {}),
        ("GET", "/api/pools/web", "get_pool", {"pool": "web"}),
        ("POST", "/api/pools/web/instances", "add_instance", {"pool": "web"}),
        ("GET", "/api/pools/w/instances/[::1]:80", "get_instance", {"pool": "w", "address": "[::1]:80"}),
        ("DELETE", "/api/pools/w/instances/a:1", "remove_instance", {"pool": "w", "address": "a:1"}),
        ("POST", "/api/pools/w/instances/a:1/drain", "drain", {"pool": "w", "address": "a:1"}),
        ("POST", "/api/pools/w/instances/a:1/enable", "enable", {"pool": "w", "address": "a:1"}),
        ("POST", "/api/pools/w/instances/a:1/maint", "maint", {"pool": "w", "address": "a:1"}),
        ("PUT", "/api/pools/w/instances/a:1/weight", "set_weight", {"pool": "w", "address": "a:1"}),
    ],
)
def test_resolve(method: str, path: str, handler: str, params: dict[str, str]) -> None:
    route, got = resolve(method, path)
    assert (route.handler, got) == (handler, params)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/api/pools", ("GET",)),
        ("GET", "/api/pools/w/instances", ("POST",)),
        ("PUT", "/api/pools/w/instances/a:1", ("GET", "DELETE")),
        ("GET", "/api/pools/w/instances/a:1/drain", ("POST",)),
        ("DELETE", "/", ("GET",)),
    ],
)
def test_wrong_method_names_what_is_allowed(method: str, path: str, allowed: tuple[str, ...]) -> None:
    with pytest.raises(WrongMethod) as caught:
        resolve(method, path)
    assert caught.value.allowed == allowed


@pytest.mark.parametrize(
    "path",
    [
        "/favicon.ico",
        "/api",
        "/api/pools/w/members",
        "/api/pools/w/instances/a:1/x",
        "/api/pools/w/instances/a:1/weight/x",
    ],
)
def test_no_route(path: str) -> None:
    with pytest.raises(NoRoute):
        resolve("GET", path)


def test_every_route_has_its_method_and_its_place_in_the_document() -> None:
    paths = openapi_document()["paths"]
    for route in ROUTES:
        assert callable(getattr(AdminApp, route.handler, None)), route
        op = paths[route.path][route.method.lower()]
        assert op["operationId"] == route.operation_id
        assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == route.params()
    assert sum(len(ops) for ops in paths.values()) == len(ROUTES)
    assert len({r.operation_id for r in ROUTES}) == len(ROUTES)
