"""The dashboard's data in the admin API: /api/history (one point a second, kept server-side so a
fresh page has the last minutes), /api/events (state changes, who made them, joins and leaves),
the instance's version and time in its state, and the vendored static files."""

from __future__ import annotations

import asyncio
import time

from openapi_schema_validator import OAS31Validator

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


def validator(name: str) -> OAS31Validator:
    doc = openapi_document()
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


WEB1 = "/api/pools/web/instances/127.0.0.1:9001"


async def test_history_has_points_of_every_pool_and_instance(running) -> None:
    run = await running(POOLS)
    c = run.rt.pools["web"].get("127.0.0.1:9001").counters

    async def points() -> int:
        return len((await run.client.get("/api/history")).json()["times"])

    first = await points()
    c.completed += 50
    c.record_latency(0.02)
    c.active = 2
    # The admin samples once a second: wait for two points after the change.
    deadline = asyncio.get_running_loop().time() + 15
    while await points() < first + 2:
        assert asyncio.get_running_loop().time() < deadline, "no new points within 15 s"
        await asyncio.sleep(0.1)
    doc = (await run.client.get("/api/history")).json()
    validator("History").validate(doc)
    assert doc["interval"] == 1.0
    assert set(doc["pools"]) == {"web", "api"}
    web = doc["pools"]["web"]
    assert set(web["instances"]) == {"127.0.0.1:9001", "127.0.0.1:9002"}
    n = len(doc["times"])
    assert all(len(v) == n for v in web["pool"].values())
    assert abs(doc["times"][-1] - time.time()) < 60  # wall-clock seconds, what a browser plots
    one = web["instances"]["127.0.0.1:9001"]
    assert sum(v for v in one["requests_per_s"] if v) > 0
    assert 2 in one["connections"]
    assert any(v is not None and 10 < v <= 25 for v in one["p50_ms"])
    newer = (await run.client.get("/api/history", params={"since": doc["times"][-2]})).json()
    assert newer["times"][0] == doc["times"][-1]
    assert len(newer["pools"]["web"]["pool"]["connections"]) == len(newer["times"])
    bad = await run.client.get("/api/history", params={"since": "soon"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]


async def test_events_say_who_changed_what(running) -> None:
    run = await running(POOLS)
    admin = run.admin
    await until_async(lambda: admin._looked, message="the admin's first look at the pools")
    assert (await run.client.post(f"{WEB1}/drain")).status_code == 200
    r = await run.client.post(f"{WEB1}/enable", headers={"tidegate-actor": "rollout"})
    assert r.status_code == 200
    added = await run.client.post(
        "/api/pools/web/instances", json={"address": "127.0.0.1:9003", "meta": {"version": "2.1"}}
    )
    assert added.status_code == 201 and added.json()["version"] == "2.1"
    await until_async(lambda: admin.events.since("web", "127.0.0.1:9003"), message="the newcomer seen")
    doc = (await run.client.get("/api/events", params={"pool": "web"})).json()
    validator("Events").validate(doc)
    got = [(e["address"], e["old"], e["new"], e["kind"], e["cause"]) for e in doc["events"]]
    assert got == [
        ("127.0.0.1:9003", None, "up", "pool", "added"),
        ("127.0.0.1:9001", "draining", "up", "rollout", "operator: enable (rollout)"),
        ("127.0.0.1:9001", "up", "draining", "operator", "operator: drain"),
    ]
    assert doc["recorded"] == 3
    one = (await run.client.get("/api/events", params={"instance": "127.0.0.1:9001", "limit": 1})).json()
    assert [e["cause"] for e in one["events"]] == ["operator: enable (rollout)"]
    # Time in the current state: since the enable for 9001, since the start for 9002.
    pools = (await run.client.get("/api/pools")).json()["pools"]
    by_address = {i["address"]: i for i in pools[0]["instances"]}
    assert 0 <= by_address["127.0.0.1:9001"]["in_state_s"] < by_address["127.0.0.1:9002"]["in_state_s"]
    assert by_address["127.0.0.1:9002"]["version"] is None
    assert (await run.client.delete("/api/pools/web/instances/127.0.0.1:9003")).status_code == 200

    async def removed() -> bool:
        events = (await run.client.get("/api/events", params={"limit": 1})).json()["events"]
        return events[0]["cause"] == "removed"

    deadline = asyncio.get_running_loop().time() + 15
    while not await removed():
        assert asyncio.get_running_loop().time() < deadline, "no 'removed' event within 15 s"
        await asyncio.sleep(0.1)
    for bad in ({"limit": "0"}, {"limit": "2.5"}, {"limit": "x"}):
        r = await run.client.get("/api/events", params=bad)
        assert r.status_code == 400 and "limit" in r.json()["error"]
    # An actor that is not a short word is not written into causes.
    await run.client.post(f"{WEB1}/maint", headers={"tidegate-actor": "Evil) (rollout"})
    assert admin.events.recent(limit=1)[0].cause == "operator: maint"


async def test_static_files_are_served_with_types_and_caching_without_the_token(running) -> None:
    run = await running(POOLS, token="s3cret")
    run.client.headers.pop("authorization")
    for name, kind, start in (
        ("uPlot.iife.min.js", "text/javascript", b"/*! https://github.com/leeoniya/uPlot"),
        ("uPlot.min.css", "text/css", b".uplot"),
        ("uPlot.LICENSE", "text/plain", b"The MIT License"),
    ):
        r = await run.client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(kind)
        assert r.headers["cache-control"] == "public, max-age=86400"
        assert r.content.startswith(start), name
    for missing in ("/static/nope.js", "/static/%2e%2e", "/static/README" + ".md"):
        r = await run.client.get(missing)
        assert r.status_code == 404 and r.headers["cache-control"] == "no-store", missing
    assert (await run.client.get("/api/history")).status_code == 401
    assert (await run.client.get("/api/events")).status_code == 401
