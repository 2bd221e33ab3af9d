"""Two runtimes on one real etcd: what an operator does on one reaches the other's pools."""

from __future__ import annotations

import asyncio
import functools
import signal

import pytest
from openapi_schema_validator import OAS31Validator

from tidegate.balancing.state import State
from tidegate.config import load_config
from tidegate.control.admin.openapi import openapi_document
from tidegate.control.registry.etcd_client import EtcdClient
from tidegate.control.registry.layout import encode_hold, hold_key, instance_key, weight_key
from tidegate.control.runtime.process import Runtime
from tidegate.testing.etcd import Etcd

A, B = "127.0.0.1:9101", "127.0.0.1:9102"


def validate(name: str, doc: object) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": openapi_document()["components"]}
    OAS31Validator(schema).validate(doc)


POOLS = [{"name": "web", "instances": [{"address": A}]}, {"name": "api"}]


def _state(r, pool: str, address: str) -> State | None:  # type: ignore[no-untyped-def]
    inst = r.rt.pools[pool].get(address)
    return None if inst is None else inst.state


async def test_operator_state_and_registrations_reach_every_process(
    shared_etcd: Etcd, prefix: str, running
) -> None:  # type: ignore[no-untyped-def]
    one = await running(shared_etcd.url, prefix, POOLS)
    two = await running(shared_etcd.url, prefix, POOLS)
    web = two.rt.pools["web"]

    # an instance registered through one process's admin API appears in the other's pool
    r = await one.client.post(
        "/api/pools/web/instances", json={"address": B, "weight": 2, "meta": {"k": "v"}}
    )
    assert r.status_code == 201, r.text
    await two.registry.until(lambda: web.get(B) is not None)
    assert (web.get(B).weight, web.get(B).meta) == (2, {"k": "v"})  # type: ignore[union-attr]

    # drain, maint, weight and enable: file instances and registered ones alike
    for address in (A, B):
        path = f"/api/pools/web/instances/{address}"
        assert (await one.client.post(path + "/drain")).json()["state"] == "draining"
        await two.registry.until(lambda a=address: _state(two, "web", a) is State.DRAINING)
        assert web.held(web.get(address))  # type: ignore[arg-type]  # an operator's hold: health cannot end it
        assert (await one.client.post(path + "/maint")).json()["state"] == "maint"
        await two.registry.until(lambda a=address: _state(two, "web", a) is State.MAINT)
        assert (await one.client.put(path + "/weight", json={"weight": 7})).json()["weight"] == 7
        await two.registry.until(lambda a=address: web.get(a).weight == 7)  # type: ignore[union-attr]
        # ... and the other way round
        assert (await two.client.post(path + "/enable")).json()["state"] == "up"
        await one.registry.until(lambda a=address: _state(one, "web", a) is State.UP)
    assert [i.address for i in web.eligible()] == [A, B]

    # the pool's document says where the shared state lives
    doc = (await two.client.get("/api/pools/web")).json()
    assert doc["registry"]["type"] == "etcd" and doc["registry"]["connected"] is True
    validate("Pool", doc)
    await two.registry.until(lambda: two.registry.describe_pool("web")["processes"] == 2)  # type: ignore[index]

    # removing a registered instance removes it everywhere; a file instance only where asked
    assert (await one.client.delete(f"/api/pools/web/instances/{B}")).status_code == 200
    await two.registry.until(lambda: web.get(B) is None)
    assert (await one.client.delete(f"/api/pools/web/instances/{A}")).status_code == 200
    assert one.rt.pools["web"].get(A) is None and web.get(A) is not None
    async with _client(shared_etcd.url) as etcd:
        _, kvs = await etcd.range_prefix(prefix + "instances/")
        assert kvs == []


class _client:
    def __init__(self, url: str) -> None:
        self.c = EtcdClient([url])

    async def __aenter__(self) -> EtcdClient:
        return self.c

    async def __aexit__(self, *exc: object) -> None:
        await self.c.aclose()


async def test_keys_for_unknown_pools_and_bad_values_are_ignored(
    shared_etcd: Etcd, prefix: str, running
) -> None:  # type: ignore[no-untyped-def]
    one = await running(shared_etcd.url, prefix, POOLS)
    async with _client(shared_etcd.url) as etcd:
        await etcd.put(instance_key(prefix, "nosuchpool", B), b"{}")
        await etcd.put(instance_key(prefix, "web", B), b"not json")
        await etcd.put(hold_key(prefix, "web", A), b'{"hold": "sideways"}')
        await etcd.put(prefix + "somebody/else", b"x")
        revision = await etcd.put(hold_key(prefix, "api", A), encode_hold("maint"))  # no such instance there
    await one.registry.until(lambda: one.registry.snapshot.revision >= revision)
    assert [i.address for i in one.rt.pools["web"]] == [A]
    assert _state(one, "web", A) is State.UP
    assert len(one.rt.pools["api"]) == 0


async def test_a_write_etcd_does_not_take_changes_nothing_and_resyncs_after(
    etcd: Etcd, prefix: str, running
) -> None:  # type: ignore[no-untyped-def]
    etcd.start()
    one = await running(etcd.url, prefix, POOLS)
    two = await running(etcd.url, prefix, POOLS)
    etcd.kill()
    await one.registry.until(lambda: not one.registry.connected)
    r = await one.client.post(f"/api/pools/web/instances/{A}/drain")
    assert r.status_code == 503, r.text
    assert "nothing changed" in r.json()["error"]
    validate("Error", r.json())
    assert _state(one, "web", A) is State.UP  # not here either
    r = await one.client.post("/api/pools/web/instances", json={"address": B})
    assert r.status_code == 503 and one.rt.pools["web"].get(B) is None
    # traffic planes keep what they had meanwhile
    assert [i.address for i in two.rt.pools["web"].eligible()] == [A]

    etcd.start()
    await one.registry.until(lambda: one.registry.connected)
    assert (await one.client.post(f"/api/pools/web/instances/{A}/drain")).status_code == 200
    await two.registry.until(lambda: _state(two, "web", A) is State.DRAINING)


async def test_a_process_starts_without_etcd_and_catches_up(etcd: Etcd, prefix: str, running) -> None:  # type: ignore[no-untyped-def]
    one = await running(etcd.url, prefix, POOLS)  # nothing listens there yet
    assert not one.registry.connected
    assert [i.address for i in one.rt.pools["web"].eligible()] == [A]  # the file's pools serve
    etcd.start()
    async with _client(etcd.url) as client:
        await client.put(hold_key(prefix, "web", A), encode_hold("maint"))
        await client.put(instance_key(prefix, "web", B), b'{"weight": 3}')
    await one.registry.until(
        lambda: _state(one, "web", A) is State.MAINT and one.rt.pools["web"].get(B) is not None
    )
    assert [i.address for i in one.rt.pools["web"].eligible()] == [B]


@pytest.mark.parametrize("body", [{"weight": -1}, {"weight": "x"}, {}])
async def test_bad_admin_calls_write_nothing(shared_etcd: Etcd, prefix: str, running, body) -> None:  # type: ignore[no-untyped-def]
    one = await running(shared_etcd.url, prefix, POOLS)
    r = await one.client.put(f"/api/pools/web/instances/{A}/weight", json=body)
    assert r.status_code == 400
    r = await one.client.post("/api/pools/web/instances", json={"address": A})
    assert r.status_code == 409
    async with _client(shared_etcd.url) as client:
        _, kvs = await client.range_prefix(prefix + "weights/")
        _, regs = await client.range_prefix(prefix + "instances/")
    assert kvs == [] and regs == []


async def test_a_frozen_etcd_is_noticed_and_resynced(etcd: Etcd, prefix: str, running) -> None:  # type: ignore[no-untyped-def]
    # SIGSTOP: connections stay open and nothing answers (a partition), so the watch alone would
    # wait forever; the failing presence renewal makes the registry read the prefix again.
    etcd.start()
    one = await running(etcd.url, prefix, POOLS)
    await one.registry.until(lambda: one.registry.describe_pool("web")["processes"] == 1)  # type: ignore[index]
    assert etcd.proc is not None
    etcd.proc.signal(signal.SIGSTOP)
    try:
        # Bounds for a loaded box (each wait returns as soon as the registry says so).
        await one.registry.until(lambda: not one.registry.connected, timeout=40)
    finally:
        etcd.proc.signal(signal.SIGCONT)
    await one.registry.until(lambda: one.registry.connected, timeout=40)
    async with _client(etcd.url) as client:
        await client.put(hold_key(prefix, "web", A), encode_hold("drain"))
    await one.registry.until(lambda: _state(one, "web", A) is State.DRAINING, timeout=40)


async def test_a_reload_keeps_registrations_and_operator_state(
    shared_etcd: Etcd, prefix: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.toml"
    text = (
        f'[registry]\ntype = "etcd"\nendpoints = ["{shared_etcd.url}"]\nprefix = "{prefix}"\n'
        f'[[pools]]\nname = "web"\ninstances = [{{ address = "{A}", weight = 2 }}]\n'
    )
    path.write_text(text)
    rt = Runtime(load_config(path), str(path))
    await rt.start()
    try:
        registry = next(s for s in rt.services if s.name == "registry")
        await registry.set_weight("web", A, 7)  # type: ignore[attr-defined]
        await registry.hold("web", A, "maint")  # type: ignore[attr-defined]
        await registry.register("web", B, 3, {})  # type: ignore[attr-defined]
        web = rt.pools["web"]
        path.write_text(text.replace("weight = 2", "weight = 4"))
        assert await rt.reload()
        assert rt.pools["web"] is web
        a, b = web.get(A), web.get(B)
        assert a is not None and b is not None
        assert (a.weight, a.state, b.weight) == (
            7,
            State.MAINT,
            3,
        )  # the operator's weight wins over the file's
    finally:
        await rt.stop()


async def test_writes_to_a_frozen_etcd_say_their_outcome_is_unknown_and_every_process_converges(
    etcd: Etcd, prefix: str, running, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP etcd: a write sent to it gets no answer, yet etcd may apply it once it runs again
    (it had read the request). The call must not say "nothing changed": 504, outcome unknown;
    after SIGCONT both processes hold what etcd holds and the log says what was applied."""
    etcd.start()
    one = await running(etcd.url, prefix, POOLS)
    two = await running(etcd.url, prefix, POOLS)
    assert etcd.proc is not None
    etcd.proc.signal(signal.SIGSTOP)
    try:
        r = await one.client.post(f"/api/pools/web/instances/{A}/drain")
        assert r.status_code == 504, r.text
        error = r.json()["error"]
        assert "outcome unknown; the registry will converge" in error and "nothing changed" not in error
        validate("Error", r.json())
        assert _state(one, "web", A) is State.UP  # not applied here on a guess
        r = await one.client.put(f"/api/pools/web/instances/{A}/weight", json={"weight": 5})
        assert r.status_code == 504, r.text
    finally:
        etcd.proc.signal(signal.SIGCONT)

    keys = (hold_key(prefix, "web", A), weight_key(prefix, "web", A))
    notes = [f"of {key} whose outcome was unknown was" for key in keys]
    await one.registry.until(lambda: all(n in caplog.text for n in notes), timeout=30)

    def last_word(note: str) -> bool:
        """What the log said last about a write: applied or not."""
        said = [line for line in caplog.text.splitlines() if note in line]
        return " was applied " in said[-1]

    def agree(r, held: set[str], revision: int) -> bool:  # type: ignore[no-untyped-def]
        inst = r.rt.pools["web"].get(A)
        return (
            r.registry.snapshot.revision >= revision
            and (inst.state is State.DRAINING) is (keys[0] in held)
            and inst.weight == (5 if keys[1] in held else 1)
        )

    # etcd may still apply a write it read before freezing after the processes' first read:
    # read what etcd holds until both processes agree with it (then the log does too)
    async with _client(etcd.url) as client, asyncio.timeout(30):
        while True:
            revision, kvs = await client.range_prefix(prefix)
            held = {kv.key for kv in kvs}
            try:
                for r in (one, two):
                    await r.registry.until(functools.partial(agree, r, held, revision), timeout=2)
            except TimeoutError:
                continue
            break
    for key, note in zip(keys, notes, strict=True):
        assert last_word(note) is (key in held), caplog.text
    print(f"applied after SIGCONT: drain {keys[0] in held}, weight {keys[1] in held}")
