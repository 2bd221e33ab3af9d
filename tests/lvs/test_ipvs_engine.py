"""The ipvs engine against a fake netlink peer: this kernel has no IPVS, so the generic-netlink
socket is replaced by a peer made of pyroute2's own message classes. Every request the engine
makes goes through pyroute2's request code (IPVS.service/dest), is encoded to netlink bytes and
decoded again as the kernel would read it; the peer keeps the table those messages describe and
answers dumps with encoded messages too. What is checked is what the kernel would be told."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pyroute2
import pytest
from pyroute2.ipvs import AsyncIPVS
from pyroute2.netlink.generic import ipvs as genl

from tidegate.balancing import Pool
from tidegate.balancing.state import State
from tidegate.lvs.ipvs_engine import IpvsEngine

FAMILY_ID = 0x1D  # what the controller would have resolved "IPVS" to


def _wire(msg: genl.ipvsmsg) -> genl.ipvsmsg:
    """The message as the other end reads it: encoded to bytes, decoded from them."""
    msg["header"]["type"] = FAMILY_ID
    msg.encode()
    back = genl.ipvsmsg(msg.data)
    back.decode()
    return back


class Kernel:
    """The peer's IPVS table, changed only by decoded requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        self.services: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.dests: dict[tuple[str, int], dict[str, Any]] = {}
        self.figures: dict[tuple[str, int], dict[str, int]] = {}

    def handle(self, msg: genl.ipvsmsg) -> list[genl.ipvsmsg]:
        cmd = msg["cmd"]
        svc = dict(msg.get_attr("IPVS_CMD_ATTR_SERVICE")["attrs"])
        nla = msg.get_attr("IPVS_CMD_ATTR_DEST")
        dest = dict(nla["attrs"]) if nla is not None else None
        names = {
            genl.IPVS_CMD_NEW_SERVICE: "new-service",
            genl.IPVS_CMD_DEL_SERVICE: "del-service",
            genl.IPVS_CMD_NEW_DEST: "new-dest",
            genl.IPVS_CMD_SET_DEST: "set-dest",
            genl.IPVS_CMD_DEL_DEST: "del-dest",
            genl.IPVS_CMD_GET_DEST: "get-dest",
        }
        self.requests.append((names[cmd], svc, dest))
        key = (svc["IPVS_SVC_ATTR_ADDR"], svc["IPVS_SVC_ATTR_PORT"], svc["IPVS_SVC_ATTR_PROTOCOL"])
        if cmd == genl.IPVS_CMD_NEW_SERVICE:
            self.services[key] = svc
        elif cmd == genl.IPVS_CMD_DEL_SERVICE:
            del self.services[key]
            self.dests.clear()
        elif cmd in (genl.IPVS_CMD_NEW_DEST, genl.IPVS_CMD_SET_DEST, genl.IPVS_CMD_DEL_DEST):
            assert key in self.services and dest is not None
            where = (dest["IPVS_DEST_ATTR_ADDR"], dest["IPVS_DEST_ATTR_PORT"])
            if cmd == genl.IPVS_CMD_NEW_DEST:
                assert where not in self.dests
                self.dests[where] = dest
            elif cmd == genl.IPVS_CMD_SET_DEST:
                self.dests[where] = dest
            else:
                del self.dests[where]
        elif cmd == genl.IPVS_CMD_GET_DEST:
            return [self._dest_reply(where) for where in self.dests]
        return []

    def _dest_reply(self, where: tuple[str, int]) -> genl.ipvsmsg:
        fig = self.figures.get(where, {})
        reply = genl.ipvsmsg()
        reply["cmd"] = genl.IPVS_CMD_NEW_DEST
        reply["version"] = 1
        stats = [
            ("IPVS_STATS_ATTR_CONNS", fig.get("conns", 0)),
            ("IPVS_STATS_ATTR_INBYTES", fig.get("in_bytes", 0)),
            ("IPVS_STATS_ATTR_OUTBYTES", fig.get("out_bytes", 0)),
        ]
        reply["attrs"] = [
            (
                "IPVS_CMD_ATTR_DEST",
                {
                    "attrs": [
                        ("IPVS_DEST_ATTR_ADDR_FAMILY", socket.AF_INET),
                        ("IPVS_DEST_ATTR_ADDR", where[0]),
                        ("IPVS_DEST_ATTR_PORT", where[1]),
                        ("IPVS_DEST_ATTR_ACTIVE_CONNS", fig.get("active", 0)),
                        ("IPVS_DEST_ATTR_STATS", {"attrs": stats}),
                    ]
                },
            )
        ]
        return _wire(reply)


class FakeIPVS:
    """pyroute2.IPVS's interface, its requests built by pyroute2's own AsyncIPVS code."""

    kernel: Kernel

    async def _do_request(self, msg: genl.ipvsmsg, msg_flags: int = 0) -> list[genl.ipvsmsg]:
        msg["header"]["flags"] = msg_flags
        return self.kernel.handle(_wire(msg))

    def service(self, command: str, service: Any = None) -> Any:
        return asyncio.run(AsyncIPVS.service(self, command, service))  # type: ignore[arg-type]

    def dest(self, command: str, service: Any, dest: Any = None) -> Any:
        return asyncio.run(AsyncIPVS.dest(self, command, service, dest))  # type: ignore[arg-type]

    def close(self) -> None:
        pass


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    k = Kernel()
    monkeypatch.setattr(FakeIPVS, "kernel", k, raising=False)
    monkeypatch.setattr(pyroute2, "IPVS", FakeIPVS)
    return k


def _pool() -> Pool:
    pool = Pool("web", "weighted-round-robin")
    pool.add("198.18.0.2:8080", "198.18.0.2", 8080, 3)
    pool.add("198.18.0.3:8080", "198.18.0.3", 8080, 1)
    return pool


def _dests(kernel: Kernel) -> dict[tuple[str, int], tuple[int, int]]:
    return {w: (d["IPVS_DEST_ATTR_WEIGHT"], d["IPVS_DEST_ATTR_FWD_METHOD"]) for w, d in kernel.dests.items()}


def test_the_engine_programs_the_service_and_mirrors_every_change(kernel: Kernel) -> None:
    pool = _pool()
    engine = IpvsEngine(mode="dr", vip="198.18.0.10", port=80, protocol="tcp", pool=pool)
    engine._create()
    # The virtual service: address, port, TCP, the pool's scheduler as its IPVS module.
    ((kind, svc, _),) = kernel.requests[:1]
    assert kind == "new-service"
    assert svc["IPVS_SVC_ATTR_AF"] == socket.AF_INET
    assert (svc["IPVS_SVC_ATTR_ADDR"], svc["IPVS_SVC_ATTR_PORT"]) == ("198.18.0.10", 80)
    assert svc["IPVS_SVC_ATTR_PROTOCOL"] == socket.IPPROTO_TCP
    assert svc["IPVS_SVC_ATTR_SCHED_NAME"] == "wrr"
    # Each instance a real server with its weight, forwarded by direct routing (IP_VS_CONN_F_DROUTE).
    assert _dests(kernel) == {("198.18.0.2", 8080): (3, 3), ("198.18.0.3", 8080): (1, 3)}
    assert [k for k, _, _ in kernel.requests] == ["new-service", "new-dest", "new-dest", "get-dest"]

    # Nothing changed: only the figures are read.
    kernel.requests.clear()
    engine._sync()
    assert [k for k, _, _ in kernel.requests] == ["get-dest"]

    # Drained: weight 0 (quiesced, its connections kept); a weight change; a removal.
    kernel.requests.clear()
    pool.set_state(pool.get("198.18.0.2:8080"), State.DRAINING, "operator")  # type: ignore[arg-type]
    pool.set_weight(pool.get("198.18.0.3:8080"), 5)  # type: ignore[arg-type]
    engine._sync()
    assert [k for k, _, _ in kernel.requests] == ["set-dest", "set-dest", "get-dest"]
    assert _dests(kernel) == {("198.18.0.2", 8080): (0, 3), ("198.18.0.3", 8080): (5, 3)}
    pool.remove("198.18.0.2:8080")
    kernel.requests.clear()
    engine._sync()
    assert [k for k, _, _ in kernel.requests] == ["del-dest", "get-dest"]
    assert _dests(kernel) == {("198.18.0.3", 8080): (5, 3)}

    # The kernel's per-destination counters become the instance's figures.
    kernel.figures[("198.18.0.3", 8080)] = {"active": 7, "conns": 40, "in_bytes": 1234, "out_bytes": 5678}
    engine._sync()
    inst = pool.get("198.18.0.3:8080")
    assert inst is not None
    assert (inst.counters.active, inst.counters.bytes_in, inst.counters.bytes_out) == (7, 1234, 5678)
    assert engine.stats["198.18.0.3:8080"]["conns"] == 40


@pytest.mark.parametrize(
    ("mode", "fwd", "scheduler", "module"), [("nat", 0, "maglev", "mh"), ("tun", 2, "lc", "lc")]
)
def test_forwarding_method_and_scheduler_module(
    kernel: Kernel, mode: str, fwd: int, scheduler: str, module: str
) -> None:
    pool = Pool("web", scheduler)
    pool.add("198.18.0.2:8080", "198.18.0.2", 8080, 2)
    engine = IpvsEngine(mode=mode, vip="198.18.0.10", port=53, protocol="udp", pool=pool)
    engine._create()
    (svc,) = kernel.services.values()
    assert svc["IPVS_SVC_ATTR_SCHED_NAME"] == module
    assert svc["IPVS_SVC_ATTR_PROTOCOL"] == socket.IPPROTO_UDP
    assert _dests(kernel) == {("198.18.0.2", 8080): (2, fwd)}


def test_stop_removes_the_service(kernel: Kernel) -> None:
    engine = IpvsEngine(mode="dr", vip="198.18.0.10", port=80, protocol="tcp", pool=_pool())
    engine._create()
    asyncio.run(engine.stop(1.0))
    assert kernel.services == {} and kernel.requests[-1][0] == "del-service"
