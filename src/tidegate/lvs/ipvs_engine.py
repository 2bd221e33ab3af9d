"""The `ipvs` engine: the same [lvs] section programmed into the kernel's IP Virtual Server over
generic netlink (pyroute2), which is what a production director runs where the kernel has IPVS.

The control plane stays tidegate's: health checks and the admin API change the pool, and every
change of the pool is mirrored into IPVS (an instance that takes no new work gets weight 0, the
IPVS way to quiesce). Figures come back from the kernel's per-destination counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool

# tidegate scheduler names → IPVS scheduler modules (ip_vs_rr, ip_vs_wrr, ...).
SCHEDULERS = {
    "round-robin": "rr",
    "rr": "rr",
    "weighted-round-robin": "wrr",
    "wrr": "wrr",
    "least-connections": "lc",
    "lc": "lc",
    "wlc": "wlc",
    "source-hash": "sh",
    "sh": "sh",
    "maglev": "mh",
    "mh": "mh",
    "consistent-hash": "mh",
    "random": "wlc",
    "p2c": "wlc",
}
FORWARDING = {"nat": 0, "tun": 2, "dr": 3}  # IP_VS_CONN_F_MASQ, _TUNNEL, _DROUTE

NO_IPVS = (
    "the kernel has no IPVS (CONFIG_IP_VS is unset or the ip_vs module cannot be loaded): "
    'the ipvs engine cannot run here. Use engine = "userspace" in [lvs].'
)


class IpvsUnavailable(Exception):
    pass


def probe() -> None:
    """Raise IpvsUnavailable unless the kernel's IPVS answers on generic netlink."""
    try:
        from pyroute2 import IPVS
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise IpvsUnavailable(f"pyroute2 has no IPVS support ({exc})") from None
    try:
        with contextlib.closing(IPVS()):
            pass
    except (NetlinkError, OSError) as exc:
        detail = "" if Path("/proc/net/ip_vs").exists() else " (/proc/net/ip_vs is missing)"
        raise IpvsUnavailable(f"{NO_IPVS}{detail} [{exc}]") from None


class IpvsEngine:
    def __init__(self, *, mode: str, vip: str, port: int, protocol: str, pool: Pool) -> None:
        self.mode = mode
        self.vip = vip
        self.port = port
        self.proto = socket.IPPROTO_TCP if protocol == "tcp" else socket.IPPROTO_UDP
        self.pool = pool
        self._version = -1
        self._programmed: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.stats: dict[str, dict[str, int]] = {}

    async def start(self) -> None:
        try:
            await asyncio.to_thread(probe)
        except IpvsUnavailable as exc:
            from tidegate.lvs.userspace import EngineError

            raise EngineError(str(exc)) from None
        await asyncio.to_thread(self._create)
        self._task = asyncio.create_task(self._sync_loop())

    def _service(self) -> Any:
        from pyroute2 import IPVSService

        sched = SCHEDULERS.get(self.pool.scheduler_name, "wlc")
        return IPVSService(addr=self.vip, port=self.port, protocol=self.proto, sched_name=sched)

    def _create(self) -> None:
        from pyroute2 import IPVS

        with contextlib.closing(IPVS()) as ipvs:
            ipvs.service("add", service=self._service())
        self._sync()

    def _weight(self, inst: Instance) -> int:
        return inst.weight if inst.state.takes_new_work else 0

    def _sync(self) -> None:
        from pyroute2 import IPVS, IPVSDest

        svc = self._service()
        fwd = FORWARDING[self.mode]
        with contextlib.closing(IPVS()) as ipvs:
            wanted = {inst.address: inst for inst in self.pool}
            for address in list(self._programmed):
                if address not in wanted:
                    host, _, port = address.rpartition(":")
                    ipvs.dest("del", service=svc, dest=IPVSDest(addr=host, port=int(port)))
                    del self._programmed[address]
            for address, inst in wanted.items():
                w = self._weight(inst)
                dest = IPVSDest(addr=inst.host, port=inst.port, weight=w, fwd_method=fwd)
                if address not in self._programmed:
                    ipvs.dest("add", service=svc, dest=dest)
                elif self._programmed[address] != w:
                    ipvs.dest("set", service=svc, dest=dest)
                self._programmed[address] = w
            for msg in ipvs.dest("dump", service=svc):
                attrs = dict(msg.get("attrs", []))
                dest_attrs = dict(attrs.get("IPVS_CMD_ATTR_DEST", {}).get("attrs", []))
                addr = f"{dest_attrs.get('IPVS_DEST_ATTR_ADDR')}:{dest_attrs.get('IPVS_DEST_ATTR_PORT')}"
                st = dict(dest_attrs.get("IPVS_DEST_ATTR_STATS", {}).get("attrs", []))
                self.stats[addr] = {
                    "active": int(dest_attrs.get("IPVS_DEST_ATTR_ACTIVE_CONNS", 0)),
                    "inactive": int(dest_attrs.get("IPVS_DEST_ATTR_INACT_CONNS", 0)),
                    "conns": int(st.get("IPVS_STATS_ATTR_CONNS", 0)),
                    "in_packets": int(st.get("IPVS_STATS_ATTR_INPKTS", 0)),
                    "out_packets": int(st.get("IPVS_STATS_ATTR_OUTPKTS", 0)),
                    "in_bytes": int(st.get("IPVS_STATS_ATTR_INBYTES", 0)),
                    "out_bytes": int(st.get("IPVS_STATS_ATTR_OUTBYTES", 0)),
                }
        for inst in self.pool:
            figures = self.stats.get(inst.address)
            if figures is not None:
                inst.counters.active = figures["active"]
                inst.counters.bytes_in = figures["in_bytes"]
                inst.counters.bytes_out = figures["out_bytes"]

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.to_thread(self._sync)
            await asyncio.sleep(1.0)

    def set_pool(self, pool: Pool) -> None:
        self.pool = pool

    async def stop(self, grace: float, established: Callable[[], int] | None = None) -> None:
        # IPVS keeps forwarding what it holds after we leave; nothing to wait for here.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        def remove() -> None:
            from pyroute2 import IPVS

            with contextlib.closing(IPVS()) as ipvs:
                ipvs.service("del", service=self._service())

        with contextlib.suppress(Exception):
            await asyncio.to_thread(remove)
