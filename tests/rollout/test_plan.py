"""Reading GET /api/pools and planning a rollout from it (pure)."""

from __future__ import annotations

import pytest

from tidegate.rollout.machine import Layer, Limits
from tidegate.rollout.plan import PlanError, make_plan
from tidegate.rollout.pool_view import parse_pools

SUP = {"supervisor": "http://127.0.0.1:4000"}


def pool_doc(states: list[str], meta: dict[str, str] | None = SUP, **extra: object) -> dict[str, object]:
    instances = [
        {"address": f"127.0.0.1:{9001 + i}", "state": s, "weight": 1, "connections": i, "meta": meta}
        for i, s in enumerate(states)
    ]
    return {"pools": [{"name": "web", "instances": instances, **extra}]}


def test_parse_pools_accepts_lists_and_maps() -> None:
    as_list = parse_pools(pool_doc(["up", "draining"]))
    as_map = parse_pools({"web": {"instances": {"127.0.0.1:9001": {"state": "up", "connections": 3}}}})
    assert as_list["web"].instances[1].state == "draining"
    assert as_list["web"].instances[1].connections == 1
    assert as_list["web"].instances[0].supervisor == "http://127.0.0.1:4000"
    assert as_map["web"].get("127.0.0.1:9001").connections == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        parse_pools("nonsense")


def test_dns_answers_count_only_an_address_of_its_own() -> None:
    doc = pool_doc(["draining", "up", "up"])
    insts = doc["pools"][0]["instances"]  # type: ignore[index]
    insts[0]["dns"] = {"ip": "10.0.0.1", "in_answers": True}
    insts[1]["dns"] = {"ip": "10.0.0.2", "in_answers": True}
    insts[2]["dns"] = {"ip": "10.0.0.3", "in_answers": True}
    pool = parse_pools(doc)["web"]
    assert pool.answered_for(pool.instances[0])  # still answered: wait for it to leave
    insts[1]["dns"]["ip"] = "10.0.0.1"  # another serving instance on the same IP (another port)
    pool = parse_pools(doc)["web"]
    assert not pool.answered_for(pool.instances[0])  # answered for that one: nothing to wait for
    insts[0]["dns"]["in_answers"] = False
    assert not parse_pools(doc)["web"].answered_for(pool.instances[0])


def test_lvs_connections_prefer_the_lvs_figures() -> None:
    doc = pool_doc(["up"])
    doc["pools"][0]["instances"][0]["lvs"] = {"active": 2, "inactive": 5}  # type: ignore[index]
    inst = parse_pools(doc)["web"].instances[0]
    assert inst.lvs_connections() == 2 and inst.connections == 0  # active ones, as ipvsadm's ActiveConn


def test_batches_and_the_pool_health_settings() -> None:
    pool = parse_pools(pool_doc(["up"] * 5, health={"rise": 3, "interval": "200ms", "path": "/healthz"}))[
        "web"
    ]
    plan = make_plan(pool, Layer.HTTP, 2, Limits())
    assert [len(b) for b in plan.batches] == [2, 2, 1]
    assert (plan.limits.rise, plan.limits.interval) == (3, 0.2)
    # The command line wins over the pool.
    plan = make_plan(pool, Layer.HTTP, 1, Limits(), rise=1, interval=0.05)
    assert (plan.limits.rise, plan.limits.interval) == (1, 0.05)


def test_refuses_what_it_cannot_finish() -> None:
    with pytest.raises(PlanError, match=r"no supervisor known for 127\.0\.0\.1:9001, 127\.0\.0\.1:9002"):
        make_plan(parse_pools(pool_doc(["up", "up"], meta=None))["web"], Layer.HTTP, 1, Limits())
    with pytest.raises(PlanError, match="would leave no instance"):
        make_plan(parse_pools(pool_doc(["up", "up", "down"]))["web"], Layer.HTTP, 2, Limits())
    with pytest.raises(PlanError, match="not used by any DNS record"):
        make_plan(parse_pools(pool_doc(["up", "up"]))["web"], Layer.DNS, 1, Limits())


def test_maint_instances_are_skipped_with_the_reason() -> None:
    plan = make_plan(parse_pools(pool_doc(["up", "maint", "up"]))["web"], Layer.HTTP, 1, Limits())
    assert [b[0].address for b in plan.batches] == ["127.0.0.1:9001", "127.0.0.1:9003"]
    assert plan.skipped == (("127.0.0.1:9002", "in maint (an operator took it out)"),)


def test_dns_wait_is_max_ttl_plus_grace() -> None:
    pool = parse_pools(pool_doc(["up", "up"], dns={"max_ttl": 30, "records": ["www.example.test."]}))["web"]
    plan = make_plan(pool, Layer.DNS, 1, Limits(), dns_grace=2.0)
    assert plan.limits.dns_wait == 32.0
    assert plan.limits.dns_why == "max TTL 30 s + grace 2 s"
