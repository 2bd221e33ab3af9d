"""The admin API in-process: shapes, operator calls applied to the next pick, bad calls that
change nothing, the token, removal that drains first."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from tidegate.balancing.state import State
from tidegate.control.admin.openapi import openapi_document
from tidegate.testing.wait import until_async

POOLS = {
    "pools": [
        {
            "name": "web",
            "instances": [{"address": "127.0.0.1:9001"}, {"address": "127.0.0.1:9002", "weight": 2}],
        },
        {"name": "api", "slow_start": 5, "instances": [{"address": "127.0.0.1:9101"}]},
    ]
}

VOLATILE = ("iops", "in_state_s")


def validator(name: str) -> OAS31Validator:
    doc = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return OAS31Validator(schema)


def stable(doc: Any) -> Any:
    """The pools document without the figures that move on their own (IOPS over a window)."""
    if isinstance(doc, dict):
        return {k: stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


async def test_openapi_document_is_valid_and_served(running) -> None:
    validate_spec(openapi_document())
    r = await (await running(POOLS)).client.get("/openapi.json")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(openapi_document()))


async def test_pools_shape(running) -> None:
    run = await running(POOLS)
    web = run.rt.pools["web"]
    c = web.get("127.0.0.1:9001").counters
    c.active, c.completed, c.bytes_in, c.bytes_out, c.failures, c.retries = 3, 10, 100, 1000, 1, 2
    r = await run.client.get("/api/pools")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    validator("Pools").validate(doc)
    assert [p["name"] for p in doc["pools"]] == ["web", "api"]
    p = doc["pools"][0]
    i = p["instances"][0]
    assert i["address"] == "127.0.0.1:9001" and i["state"] == "up" and i["weight"] == 1
    assert (i["connections"], i["requests"], i["bytes_in"], i["bytes_out"], i["failures"], i["retries"]) == (
        3,
        10,
        100,
        1000,
        1,
        2,
    )
    assert i["effective_weight"] == 1 and i["origin"] == "config" and i["meta"] == {}
    assert p["totals"]["connections"] == 3 and p["totals"]["requests"] == 10
    assert p["instances"][1]["weight"] == 2
    # the health service's facts: pool-level under "health", per instance under "health" too
    assert p["health"]["check"]["type"] == "none" and p["health"]["outlier"]["consecutive_failures"] == 5
    assert "healthy" in i["health"]
    one = await run.client.get("/api/pools/api")
    validator("Pool").validate(one.json())
    assert one.json()["slow_start"] == 5
    inst = await run.client.get("/api/pools/web/instances/127.0.0.1:9002")
    validator("Instance").validate(inst.json())
    assert inst.json()["weight"] == 2


async def test_operator_calls_apply_to_the_next_pick(running) -> None:
    run = await running(POOLS)
    web = run.rt.pools["web"]
    a, b = web.get("127.0.0.1:9001"), web.get("127.0.0.1:9002")
    base = "/api/pools/web/instances/127.0.0.1:9001"

    r = await run.client.post(base + "/drain")
    assert r.status_code == 200 and r.json()["state"] == "draining" and r.json()["effective_weight"] == 0
    assert {web.pick() for _ in range(4)} == {b}
    r = await run.client.post(base + "/maint")
    assert r.json()["state"] == "maint" and a.state is State.MAINT
    assert {web.pick() for _ in range(4)} == {b}
    r = await run.client.post(base + "/enable")
    assert r.json()["state"] == "up"
    assert {web.pick() for _ in range(4)} == {a, b}
    r = await run.client.put(base + "/weight", json={"weight": 0})
    assert r.status_code == 200 and r.json()["weight"] == 0
    assert {web.pick() for _ in range(4)} == {b}
    r = await run.client.put(base + "/weight", json={"weight": 5})
    assert r.json()["weight"] == 5 and a.weight == 5

    # enable in a pool with slow start ramps the instance back in
    api = run.rt.pools["api"]
    x = api.get("127.0.0.1:9101")
    await run.client.post("/api/pools/api/instances/127.0.0.1:9101/maint")
    assert api.pick() is None
    r = await run.client.post("/api/pools/api/instances/127.0.0.1:9101/enable")
    assert r.json()["state"] == "slow-start" and 0 < x.ramp < 1
    assert api.pick() is x


async def test_add_with_meta_then_remove(running) -> None:
    run = await running(POOLS)
    web = run.rt.pools["web"]
    body = {"address": "127.0.0.1:9003", "weight": 3, "meta": {"supervisor": "http://127.0.0.1:9800"}}
    r = await run.client.post("/api/pools/web/instances", json=body)
    assert r.status_code == 201
    doc = r.json()
    validator("Instance").validate(doc)
    assert doc["meta"] == {"supervisor": "http://127.0.0.1:9800"} and doc["origin"] == "api"
    new = web.get("127.0.0.1:9003")
    assert new is not None and new.weight == 3 and new.meta["supervisor"] == "http://127.0.0.1:9800"
    assert new in {web.pick() for _ in range(6)}
    r = await run.client.post("/api/pools/web/instances", json=body)
    assert r.status_code == 409 and "already" in r.json()["error"]

    # idle: removed at once
    r = await run.client.delete("/api/pools/web/instances/127.0.0.1:9003")
    assert r.status_code == 200 and r.json()["removed"] is True
    assert web.get("127.0.0.1:9003") is None
    # busy: drains first (no new picks), removed once its in-flight count reaches 0
    a = web.get("127.0.0.1:9001")
    a.counters.active = 2
    r = await run.client.delete("/api/pools/web/instances/127.0.0.1:9001")
    assert r.status_code == 202 and r.json()["state"] == "draining" and r.json()["removed"] is False
    assert a not in {web.pick() for _ in range(4)}
    a.counters.active = 1
    await asyncio.sleep(0.2)  # a few removal polls pass; it stays while work is in flight
    assert web.get("127.0.0.1:9001") is a
    a.counters.active = 0
    await until_async(lambda: web.get("127.0.0.1:9001") is None)


async def test_remove_after_grace_and_enable_cancels_removal(running) -> None:
    run = await running(POOLS)
    web = run.rt.pools["web"]
    a, b = web.get("127.0.0.1:9001"), web.get("127.0.0.1:9002")
    a.counters.active = b.counters.active = 1
    r = await run.client.delete("/api/pools/web/instances/127.0.0.1:9002?grace=0.2")
    assert r.status_code == 202
    await until_async(lambda: web.get("127.0.0.1:9002") is None)  # grace over with work in flight
    r = await run.client.delete("/api/pools/web/instances/127.0.0.1:9001?grace=0.3")
    assert r.status_code == 202
    r = await run.client.post("/api/pools/web/instances/127.0.0.1:9001/enable")
    assert r.json()["state"] == "up"
    await asyncio.sleep(0.5)  # past the grace: the removal was cancelled, the instance stays
    assert web.get("127.0.0.1:9001") is a


BAD_CALLS: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/api/pools/nope", None, 404, "no pool 'nope'"),
    ("POST", "/api/pools/nope/instances", {"address": "127.0.0.1:1"}, 404, "no pool"),
    ("POST", "/api/pools/nope/instances/127.0.0.1:9001/drain", None, 404, "no pool"),
    ("POST", "/api/pools/web/instances/127.0.0.1:1/drain", None, 404, "no instance"),
    ("DELETE", "/api/pools/web/instances/127.0.0.1:1", None, 404, "no instance"),
    ("PUT", "/api/pools/web/instances/127.0.0.1:1/weight", {"weight": 1}, 404, "no instance"),
    ("POST", "/api/pools/web/instances", {"address": "nonsense"}, 400, "bad address"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:99999"}, 400, "bad address"),
    ("POST", "/api/pools/web/instances", {"address": "::1:80"}, 400, "bad address"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:0"}, 400, "port 0"),
    ("POST", "/api/pools/web/instances", {"address": 80}, 400, "address"),
    ("POST", "/api/pools/web/instances", {"weight": 1}, 400, "address is required"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:7", "weight": -1}, 400, ">= 0"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:7", "weight": "2"}, 400, "integer"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:7", "weight": True}, 400, "integer"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:7", "meta": {"a": 1}}, 400, "meta"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:7", "colour": "red"}, 400, "unknown field"),
    ("POST", "/api/pools/web/instances", {"address": "127.0.0.1:9001"}, 409, "already"),
    ("POST", "/api/pools/web/instances", b"{not json", 400, "not valid JSON"),
    ("POST", "/api/pools/web/instances", b"[1, 2]", 400, "JSON object"),
    ("POST", "/api/pools/web/instances", b"", 400, "JSON object"),
    ("POST", "/api/pools/web/instances", b"\xff\xfe", 400, "not valid JSON"),
    (
        "POST",
        "/api/pools/web/instances",
        b'{"address": "127.0.0.1:7", "pad": "' + b"x" * 70000 + b'"}',
        413,
        "over",
    ),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001/weight", {"weight": -1}, 400, ">= 0"),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001/weight", {"weight": 1.5}, 400, "integer"),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001/weight", {"weight": 10**7}, 400, "<="),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001/weight", {}, 400, "weight is required"),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001/weight", b"5", 400, "JSON object"),
    ("DELETE", "/api/pools/web/instances/127.0.0.1:9001?grace=soon", None, 400, "grace"),
    ("DELETE", "/api/pools/web/instances/127.0.0.1:9001?grace=-1", None, 400, "grace"),
    ("GET", "/api/nothing", None, 404, "no such route"),
    ("GET", "/api/pools/web/members", None, 404, "no such route"),
    ("POST", "/api/pools/web/instances/127.0.0.1:9001/explode", None, 404, "no such route"),
    ("GET", "/api/pools/web/instances/127.0.0.1:9001/weight/x", None, 404, "no such route"),
    ("GET", "/favicon.ico", None, 404, "no such route"),
    ("POST", "/api/pools", {"name": "x"}, 405, "not allowed"),
    ("DELETE", "/api/pools/web", None, 405, "not allowed"),
    ("GET", "/api/pools/web/instances", None, 405, "not allowed"),
    ("GET", "/api/pools/web/instances/127.0.0.1:9001/drain", None, 405, "not allowed"),
    ("POST", "/api/pools/web/instances/127.0.0.1:9001/weight", {"weight": 1}, 405, "not allowed"),
    ("PUT", "/api/pools/web/instances/127.0.0.1:9001", {"weight": 1}, 405, "not allowed"),
    ("POST", "/metrics", None, 405, "not allowed"),
    ("DELETE", "/", None, 405, "not allowed"),
]


async def test_bad_calls_get_4xx_json_and_change_nothing(running) -> None:
    run = await running(POOLS)
    before = stable((await run.client.get("/api/pools")).json())
    for method, path, body, status, words in BAD_CALLS:
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs["content"] = body
            kwargs["headers"] = {"content-type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        r = await run.client.request(method, path, **kwargs)
        call = f"{method} {path} {body!r:.60}"
        assert r.status_code == status, (call, r.text)
        assert r.headers["content-type"] == "application/json", call
        doc = r.json()
        validator("Error").validate(doc)
        assert words in doc["error"], (call, doc)
        if status == 405:
            assert r.headers["allow"], call
        after = stable((await run.client.get("/api/pools")).json())
        assert after == before, call
        assert run.admin.registered.get("web", set()) == set(), call


async def test_token(running) -> None:
    run = await running(POOLS, token="s3cret")
    anon = {"authorization": ""}
    for path in ("/api/pools", "/metrics", "/openapi.json"):
        r = await run.client.get(path, headers=anon)
        assert r.status_code == 401 and "Bearer" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = await run.client.post(
        "/api/pools/web/instances/127.0.0.1:9001/drain", headers={"authorization": "Bearer nope"}
    )
    assert r.status_code == 401 and r.json()["error"] == "wrong token"
    assert run.rt.pools["web"].get("127.0.0.1:9001").state is State.UP
    r = await run.client.get("/api/pools", headers={"authorization": "Basic czNjcmV0"})
    assert r.status_code == 401
    assert (await run.client.get("/api/pools")).status_code == 200
    assert (await run.client.get("/", headers=anon)).status_code == 200  # the page holds no data


async def test_metrics_read_live(running) -> None:
    run = await running(POOLS)
    c = run.rt.pools["web"].get("127.0.0.1:9002").counters
    c.completed, c.bytes_out = 41, 4096
    c.record_latency(0.02)
    await run.client.post("/api/pools/web/instances/127.0.0.1:9002/drain")
    r = await run.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    lab = 'instance="127.0.0.1:9002",pool="web"'
    assert f"tidegate_instance_requests_total{{{lab}}} 41.0" in text
    assert f"tidegate_instance_bytes_out_total{{{lab}}} 4096.0" in text
    assert f'tidegate_instance_state{{{lab},state="draining"}} 1.0' in text
    assert (
        'tidegate_instance_response_seconds_bucket{instance="127.0.0.1:9002",le="0.025",pool="web"} 1.0'
        in text
    )
    assert f"tidegate_instance_weight{{{lab}}} 2.0" in text


async def test_dashboard_page_loads_only_from_its_own_listener(running) -> None:
    run = await running(POOLS)
    r = await run.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    html = r.text
    for external in ("http://", "https://", "//", "@import"):
        assert external not in html.replace("<!doctype html>", "")
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(a.split("?")[0] for a in assets) == [
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/static/uPlot.iife.min.js",
        "/static/uPlot.min.css",
    ]
    versions = {a.split("?v=")[1] for a in assets}
    assert len(versions) == 1  # one digest of them all: a change of any busts every cached copy
    for asset in assets:
        got = await run.client.get(asset)
        assert got.status_code == 200 and got.content, asset
    script = (await run.client.get(assets[-1])).text
    for path in ("/api/pools", "/api/history", "/api/events"):
        assert path in script


def test_the_admin_listener_binds_loopback_by_default() -> None:
    from tidegate.config.model import AdminConfig, Config

    assert AdminConfig().listen == "127.0.0.1:9900"
    assert Config.model_validate({"admin": {}}).admin.listen.startswith("127.0.0.1:")
